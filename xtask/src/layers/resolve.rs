//! Names to the module that defines them: each module's scope (the items it defines, its
//! `use` bindings and glob imports) and the walk of a path through those scopes, following
//! re-exports to where the item is defined.

use std::collections::BTreeSet;

use syn::Item;
use syn::ext::IdentExt as _;

use super::modules::Tree;
use super::uses::use_leaves;

/// How many `use` hops (re-exports, globs) one name may take before it counts as not found.
const MAX_HOPS: usize = 16;

/// What a path resolves to in the crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The module itself (`use crate::pool;`, the prefix of a glob).
    Module(usize),
    /// An item defined in `module` (a type, function, constant, trait, `macro_rules!`).
    /// Anything after it in the path (`Pool::new`, an enum's variant) is the item's own.
    Item { module: usize, name: String },
}

impl Target {
    /// The module that holds what the path names.
    pub(crate) fn module(&self) -> usize {
        match self {
            Target::Module(m) | Target::Item { module: m, .. } => *m,
        }
    }
}

#[derive(Debug, Default)]
struct Scope {
    /// Names of items defined here (child modules are in the tree).
    defined: BTreeSet<String>,
    /// `use` bindings: the name in scope and the path it stands for.
    imports: Vec<(String, Vec<String>)>,
    /// `use path::*` prefixes.
    globs: Vec<Vec<String>>,
}

/// Resolves paths written in one module of a tree.
pub(crate) struct Resolver<'t> {
    tree: &'t Tree,
    scopes: Vec<Scope>,
}

impl<'t> Resolver<'t> {
    pub(crate) fn new(tree: &'t Tree) -> Self {
        let scopes = tree.modules.iter().map(|m| scope(&m.items)).collect();
        Resolver { tree, scopes }
    }

    /// What `path`, written in `module`, names in this crate; `None` for names from elsewhere
    /// (other crates, std, the prelude), locals, generics, or names it cannot find (e.g. an
    /// item a macro defines).
    pub(crate) fn resolve(&self, module: usize, path: &[String]) -> Option<Target> {
        self.resolve_in(module, path, 0, &mut Vec::new())
    }

    fn resolve_in(
        &self,
        module: usize,
        path: &[String],
        hops: usize,
        active: &mut Vec<(usize, String)>,
    ) -> Option<Target> {
        let (first, rest) = path.split_first()?;
        let mut at = match first.as_str() {
            "crate" => Target::Module(super::modules::ROOT),
            "self" => Target::Module(module),
            "super" => Target::Module(self.tree.modules[module].parent?),
            "Self" => return None,
            name => self.lookup(module, name, hops, active)?,
        };
        for segment in rest {
            let Target::Module(m) = at else {
                // `Pool::new`, `Kind::Variant`: the item's own, defined with it.
                break;
            };
            at = match segment.as_str() {
                "self" => Target::Module(m),
                "super" => Target::Module(self.tree.modules[m].parent?),
                name => self.lookup(m, name, hops, active)?,
            };
        }
        Some(at)
    }

    /// `name` in `module`'s scope: a child module, an item defined there, a `use` binding
    /// (followed to what it names) or, last, a name one of its glob imports brings in.
    fn lookup(
        &self,
        module: usize,
        name: &str,
        hops: usize,
        active: &mut Vec<(usize, String)>,
    ) -> Option<Target> {
        if let Some(&child) = self.tree.modules[module].children.get(name) {
            return Some(Target::Module(child));
        }
        let scope = &self.scopes[module];
        if scope.defined.contains(name) {
            return Some(Target::Item {
                module,
                name: name.to_owned(),
            });
        }
        // A chain of `use` that is too long, or loops back on itself, finds nothing.
        let key = (module, name.to_owned());
        if hops >= MAX_HOPS || active.contains(&key) {
            return None;
        }
        active.push(key);
        let found = scope
            .imports
            .iter()
            .filter(|(binding, _)| binding == name)
            .find_map(|(_, path)| self.resolve_in(module, path, hops + 1, active))
            .or_else(|| {
                scope.globs.iter().find_map(|prefix| {
                    match self.resolve_in(module, prefix, hops + 1, active)? {
                        Target::Module(from) => self.lookup(from, name, hops + 1, active),
                        // `use Enum::*` brings in variants, which are not modules' items.
                        Target::Item { .. } => None,
                    }
                })
            });
        active.pop();
        found
    }
}

fn scope(items: &[Item]) -> Scope {
    let mut scope = Scope::default();
    for item in items {
        let ident = match item {
            Item::Const(i) => Some(&i.ident),
            Item::Enum(i) => Some(&i.ident),
            Item::Fn(i) => Some(&i.sig.ident),
            Item::Macro(i) => i.ident.as_ref(),
            Item::Static(i) => Some(&i.ident),
            Item::Struct(i) => Some(&i.ident),
            Item::Trait(i) => Some(&i.ident),
            Item::TraitAlias(i) => Some(&i.ident),
            Item::Type(i) => Some(&i.ident),
            Item::Union(i) => Some(&i.ident),
            Item::ForeignMod(block) => {
                for foreign in &block.items {
                    match foreign {
                        syn::ForeignItem::Fn(f) => {
                            scope.defined.insert(f.sig.ident.unraw().to_string());
                        }
                        syn::ForeignItem::Static(s) => {
                            scope.defined.insert(s.ident.unraw().to_string());
                        }
                        _ => {}
                    }
                }
                None
            }
            Item::Use(item) => {
                for leaf in use_leaves(item) {
                    match leaf.binding {
                        Some(binding) => scope.imports.push((binding, leaf.path)),
                        None => scope.globs.push(leaf.path),
                    }
                }
                None
            }
            _ => None,
        };
        if let Some(ident) = ident {
            let name = ident.unraw().to_string();
            if name != "_" {
                scope.defined.insert(name);
            }
        }
    }
    scope
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::modules::tests::{module_path, tree};

    /// Where `path`, written in the module at `from` (e.g. `crate::b`), resolves: the
    /// defining module's path and the name, or `None`.
    fn resolve(tree: &Tree, from: &str, path: &str) -> Option<String> {
        let from = (0..tree.modules.len())
            .find(|&m| module_path(tree, m) == from)
            .expect("module exists");
        let path: Vec<String> = path.split("::").map(str::to_owned).collect();
        Resolver::new(tree)
            .resolve(from, &path)
            .map(|target| match target {
                Target::Module(m) => format!("mod {}", module_path(tree, m)),
                Target::Item { module, name } => {
                    format!("{}::{name}", module_path(tree, module))
                }
            })
    }

    fn fixture() -> Tree {
        tree(&[
            (
                "lib.rs",
                "mod a; mod b; pub use a::Thing; pub use a::{deep::Deep as Renamed}; \
                 pub use self::Looping as Other; pub use self::Other as Looping;",
            ),
            (
                "a/mod.rs",
                "pub mod deep; use deep::Deep; pub struct Thing; \
                 mod inner { pub fn helper() {} } pub use inner::*;",
            ),
            (
                "a/deep.rs",
                "pub struct Deep; pub enum Kind { One } pub use Kind::*;",
            ),
            ("b.rs", "use super::*; use crate::Renamed as R;"),
        ])
    }

    #[test]
    fn follows_re_exports_to_the_defining_module() {
        let tree = fixture();
        assert_eq!(
            resolve(&tree, "crate::b", "super::Thing").as_deref(),
            Some("crate::a::Thing")
        );
        assert_eq!(
            resolve(&tree, "crate::b", "crate::Renamed").as_deref(),
            Some("crate::a::deep::Deep")
        );
        // Through the local rename `R`, and through b's `use super::*`.
        assert_eq!(
            resolve(&tree, "crate::b", "R").as_deref(),
            Some("crate::a::deep::Deep")
        );
        assert_eq!(
            resolve(&tree, "crate::b", "Thing").as_deref(),
            Some("crate::a::Thing")
        );
        // a's private `use deep::Deep` (a uniform path to its child) and its glob re-export
        // of an inline module.
        assert_eq!(
            resolve(&tree, "crate", "a::Deep").as_deref(),
            Some("crate::a::deep::Deep")
        );
        assert_eq!(
            resolve(&tree, "crate", "a::helper").as_deref(),
            Some("crate::a::inner::helper")
        );
    }

    #[test]
    fn modules_items_and_what_follows_them() {
        let tree = fixture();
        assert_eq!(
            resolve(&tree, "crate::a::deep", "super").as_deref(),
            Some("mod crate::a")
        );
        assert_eq!(
            resolve(&tree, "crate::a::deep", "super::super::b").as_deref(),
            Some("mod crate::b")
        );
        assert_eq!(
            resolve(&tree, "crate::b", "crate::a::deep::Kind::One").as_deref(),
            Some("crate::a::deep::Kind")
        );
        assert_eq!(
            resolve(&tree, "crate::b", "crate::a::Thing::new").as_deref(),
            Some("crate::a::Thing")
        );
    }

    #[test]
    fn names_from_elsewhere_and_loops_resolve_to_nothing() {
        let tree = fixture();
        assert_eq!(resolve(&tree, "crate::b", "std::sync::Arc"), None);
        assert_eq!(resolve(&tree, "crate::b", "crate::a::Missing"), None);
        assert_eq!(resolve(&tree, "crate::b", "Self::new"), None);
        assert_eq!(resolve(&tree, "crate", "super::x"), None);
        // `Looping` and `Other` re-export each other; `use Kind::*` brings in no items.
        assert_eq!(resolve(&tree, "crate::b", "crate::Looping"), None);
        assert_eq!(resolve(&tree, "crate::a::deep", "One"), None);
    }
}
