//! What a module's code names: the paths of its `use` items, of its types, expressions and
//! patterns, and those written in macro arguments, outside `#[cfg(test)]` items.

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::ext::IdentExt as _;
use syn::visit::{self, Visit};
use syn::{ImplItem, Item, ItemMacro, ItemUse, Macro, TraitItem, UseTree};

use super::modules::{impl_item_attrs, is_test, item_attrs, trait_item_attrs};

/// A path the code names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    pub(crate) path: Vec<String>,
    /// A glob import, `use path::*`.
    pub(crate) glob: bool,
}

/// One leaf of a `use` tree: `use a::{b as c, d::*}` has two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UseLeaf {
    /// The name it brings into scope (`c`; `_` for `as _`); `None` for a glob.
    pub(crate) binding: Option<String>,
    /// The path it names (`a::b`; `a::d` for the glob).
    pub(crate) path: Vec<String>,
}

/// The leaves of a `use` item; none for `use ::absolute::path`, which is never ours.
pub(crate) fn use_leaves(item: &ItemUse) -> Vec<UseLeaf> {
    let mut leaves = Vec::new();
    if item.leading_colon.is_none() {
        flatten(&item.tree, &mut Vec::new(), &mut leaves);
    }
    leaves
}

fn flatten(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<UseLeaf>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.unraw().to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => out.push(leaf(prefix, &n.ident.unraw().to_string(), None)),
        UseTree::Rename(r) => out.push(leaf(
            prefix,
            &r.ident.unraw().to_string(),
            Some(r.rename.unraw().to_string()),
        )),
        UseTree::Glob(_) => out.push(UseLeaf {
            binding: None,
            path: prefix.clone(),
        }),
        UseTree::Group(g) => {
            for tree in &g.items {
                flatten(tree, prefix, out);
            }
        }
    }
}

/// `prefix::name [as rename]`, where `a::{self}` names `a` itself.
fn leaf(prefix: &[String], name: &str, rename: Option<String>) -> UseLeaf {
    let mut path = prefix.to_vec();
    if name != "self" || prefix.is_empty() {
        path.push(name.to_owned());
    }
    let binding = rename.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
    UseLeaf {
        binding: Some(binding),
        path,
    }
}

/// Every path `items` name outside test items, `use` items included (at any depth, e.g. a
/// `use` inside a function). Single-segment paths in code are left out: a name alone is
/// either local or brought in by a `use`, which is itself counted.
pub(crate) fn named_paths(items: &[Item]) -> Vec<Named> {
    let mut collector = Collector::default();
    for item in items {
        collector.visit_item(item);
    }
    collector.found
}

#[derive(Default)]
struct Collector {
    found: Vec<Named>,
}

impl Collector {
    fn push(&mut self, path: Vec<String>, glob: bool) {
        self.found.push(Named { path, glob });
    }

    /// Paths written as tokens: `a::b` runs of identifiers joined by `::`, in any group.
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let is_colon = |i: usize, spacing: Option<Spacing>| {
            matches!(tokens.get(i), Some(TokenTree::Punct(p))
                if p.as_char() == ':' && spacing.is_none_or(|s| p.spacing() == s))
        };
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => {
                    self.scan(group.stream());
                    i += 1;
                }
                TokenTree::Ident(first) => {
                    let mut path = vec![first.unraw().to_string()];
                    let mut next = i + 1;
                    while is_colon(next, Some(Spacing::Joint)) && is_colon(next + 1, None) {
                        let Some(TokenTree::Ident(segment)) = tokens.get(next + 2) else {
                            break;
                        };
                        path.push(segment.unraw().to_string());
                        next += 3;
                    }
                    // `::a::b` is absolute, `$a::b` a macro variable.
                    let absolute = i >= 2 && is_colon(i - 1, None) && is_colon(i - 2, None);
                    let variable = i >= 1
                        && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '$');
                    if path.len() >= 2 && !absolute && !variable {
                        self.push(path, false);
                    }
                    i = next;
                }
                _ => i += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, item: &'ast Item) {
        // A nested `mod` is a module of its own (and one inside a function body is rare
        // enough to leave out).
        if matches!(item, Item::Mod(_)) || is_test(item_attrs(item)) {
            return;
        }
        visit::visit_item(self, item);
    }

    fn visit_impl_item(&mut self, item: &'ast ImplItem) {
        if !is_test(impl_item_attrs(item)) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast TraitItem) {
        if !is_test(trait_item_attrs(item)) {
            visit::visit_trait_item(self, item);
        }
    }

    fn visit_field(&mut self, field: &'ast syn::Field) {
        if !is_test(&field.attrs) {
            visit::visit_field(self, field);
        }
    }

    fn visit_variant(&mut self, variant: &'ast syn::Variant) {
        if !is_test(&variant.attrs) {
            visit::visit_variant(self, variant);
        }
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if !is_test(&arm.attrs) {
            visit::visit_arm(self, arm);
        }
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if !is_test(&local.attrs) {
            visit::visit_local(self, local);
        }
    }

    fn visit_stmt_macro(&mut self, stmt: &'ast syn::StmtMacro) {
        if !is_test(&stmt.attrs) {
            visit::visit_stmt_macro(self, stmt);
        }
    }

    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        for leaf in use_leaves(item) {
            self.push(leaf.path, leaf.binding.is_none());
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() >= 2 {
            let segments = path
                .segments
                .iter()
                .map(|s| s.ident.unraw().to_string())
                .collect();
            self.push(segments, false);
        }
        visit::visit_path(self, path);
    }

    fn visit_item_macro(&mut self, item: &'ast ItemMacro) {
        // A `macro_rules!` body names things where it is expanded, not here.
        if item.ident.is_none() {
            visit::visit_item_macro(self, item);
        }
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        self.scan(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(source: &str) -> Vec<String> {
        let file = syn::parse_file(source).expect("parses");
        named_paths(&file.items)
            .into_iter()
            .map(|n| format!("{}{}", n.path.join("::"), if n.glob { "::*" } else { "" }))
            .collect()
    }

    #[test]
    fn use_trees_flatten_to_their_leaves() {
        assert_eq!(
            paths("use crate::a::{self, b as c, d::*, e::{f, g as _}}; use ::ext::X;"),
            [
                "crate::a",
                "crate::a::b",
                "crate::a::d::*",
                "crate::a::e::f",
                "crate::a::e::g"
            ]
        );
        let file = syn::parse_file("use a::{self as z, b as _};").expect("parses");
        let Item::Use(item) = &file.items[0] else {
            unreachable!()
        };
        let bindings: Vec<_> = use_leaves(item)
            .into_iter()
            .map(|l| l.binding.expect("not a glob"))
            .collect();
        assert_eq!(bindings, ["z", "_"]);
    }

    #[test]
    fn paths_in_code_and_macros_count_but_test_items_do_not() {
        let found = paths(
            r#"
            fn f(x: crate::a::A) -> super::b::B {
                use self::c::C;
                let _ = crate::pool::Pool::new();
                println!("{}", crate::fmt::NAME);
                vec![$var::x, ::abs::y];
                single(x)
            }
            #[cfg(test)]
            fn helper() { crate::hidden::H::new(); }
            struct S;
            impl S {
                #[cfg(test)]
                fn t() { crate::hidden::I::new(); }
            }
            macro_rules! m { () => { crate::hidden::J }; }
            "#,
        );
        assert_eq!(
            found,
            [
                "crate::a::A",
                "super::b::B",
                "self::c::C",
                "crate::pool::Pool::new",
                "crate::fmt::NAME",
            ]
        );
    }
}
