//! A crate's module tree: its files, found from `lib.rs` the way rustc finds them, and each
//! module's items outside `#[cfg(test)]`.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use syn::ext::IdentExt as _;
use syn::punctuated::Punctuated;
use syn::{Attribute, ImplItem, Item, Meta, Token, TraitItem};

/// The index of the crate root in [`Tree::modules`].
pub(crate) const ROOT: usize = 0;

/// One source file, a node of the module graph.
pub(crate) struct SourceFile {
    /// Its path relative to the crate's `src`, e.g. `pool/mod.rs`.
    pub(crate) rel: String,
    /// How many lines it has, tests included.
    pub(crate) lines: usize,
    pub(crate) ast: syn::File,
}

/// One module: a file's own, or an inline `mod x { }` inside a file.
pub(crate) struct Module {
    /// `crate` for the root.
    pub(crate) name: String,
    pub(crate) parent: Option<usize>,
    /// The index of its file in [`Tree::files`].
    pub(crate) file: usize,
    /// Its non-test child modules by name.
    pub(crate) children: BTreeMap<String, usize>,
    /// Its items outside `#[cfg(test)]`, less the `mod` items (those are `children`).
    pub(crate) items: Vec<Item>,
}

/// The modules of one crate, reached from its root file; test modules are left out.
pub(crate) struct Tree {
    pub(crate) files: Vec<SourceFile>,
    pub(crate) modules: Vec<Module>,
}

impl Tree {
    /// Loads the tree whose root file is `root` (`lib.rs`); `read` gives a file's text by its
    /// path relative to `src`, or `None` when there is no such file.
    pub(crate) fn load(root: &str, read: &dyn Fn(&str) -> Option<String>) -> Result<Tree> {
        let mut loader = Loader {
            read,
            tree: Tree {
                files: Vec::new(),
                modules: Vec::new(),
            },
        };
        let text = read(root).with_context(|| format!("cannot read {root}"))?;
        let file = loader.add_file(root.to_owned(), &text)?;
        let items = loader.tree.files[file].ast.items.clone();
        let dir = parent_dir(root);
        loader.add_module("crate".to_owned(), None, file, &items, &dir, &dir)?;
        Ok(loader.tree)
    }
}

struct Loader<'r> {
    read: &'r dyn Fn(&str) -> Option<String>,
    tree: Tree,
}

impl Loader<'_> {
    fn add_file(&mut self, rel: String, text: &str) -> Result<usize> {
        let ast = syn::parse_file(text).with_context(|| format!("cannot parse {rel}"))?;
        self.tree.files.push(SourceFile {
            rel,
            lines: text.lines().count(),
            ast,
        });
        Ok(self.tree.files.len() - 1)
    }

    /// Adds a module and, depth first, its children. `child_dir` is where the files of its
    /// `mod x;` children live (`pool/` for `pool.rs` or `pool/mod.rs`); `file_dir` is the
    /// directory of its file, which `#[path = "…"]` is relative to.
    fn add_module(
        &mut self,
        name: String,
        parent: Option<usize>,
        file: usize,
        items: &[Item],
        child_dir: &str,
        file_dir: &str,
    ) -> Result<usize> {
        let index = self.tree.modules.len();
        self.tree.modules.push(Module {
            name,
            parent,
            file,
            children: BTreeMap::new(),
            items: Vec::new(),
        });
        let mut own = Vec::new();
        for item in items {
            if is_test(item_attrs(item)) {
                continue;
            }
            let Item::Mod(decl) = item else {
                own.push(item.clone());
                continue;
            };
            let child_name = decl.ident.unraw().to_string();
            let child = match &decl.content {
                Some((_, content)) => {
                    let dir = format!("{child_dir}{child_name}/");
                    self.add_module(
                        child_name.clone(),
                        Some(index),
                        file,
                        content,
                        &dir,
                        file_dir,
                    )?
                }
                None => {
                    let (rel, text) = self.locate(&decl.attrs, &child_name, child_dir, file_dir)?;
                    let child_file = self.add_file(rel.clone(), &text)?;
                    let content = self.tree.files[child_file].ast.items.clone();
                    let own_dir = parent_dir(&rel);
                    let dir = if rel.ends_with("/mod.rs") || rel == "mod.rs" {
                        own_dir.clone()
                    } else {
                        format!("{}/", rel.trim_end_matches(".rs"))
                    };
                    self.add_module(
                        child_name.clone(),
                        Some(index),
                        child_file,
                        &content,
                        &dir,
                        &own_dir,
                    )?
                }
            };
            self.tree.modules[index].children.insert(child_name, child);
        }
        self.tree.modules[index].items = own;
        Ok(index)
    }

    /// The file of `mod name;`: `#[path = "…"]`, else `name.rs`, else `name/mod.rs`.
    fn locate(
        &self,
        attrs: &[Attribute],
        name: &str,
        child_dir: &str,
        file_dir: &str,
    ) -> Result<(String, String)> {
        let candidates = match path_attr(attrs) {
            Some(path) => vec![format!("{file_dir}{path}")],
            None => vec![
                format!("{child_dir}{name}.rs"),
                format!("{child_dir}{name}/mod.rs"),
            ],
        };
        candidates
            .iter()
            .find_map(|rel| (self.read)(rel).map(|text| (rel.clone(), text)))
            .with_context(|| {
                format!(
                    "no file for `mod {name};` (tried {})",
                    candidates.join(", ")
                )
            })
    }
}

/// `pool/` for `pool/mod.rs`, the empty string for `lib.rs`.
fn parent_dir(rel: &str) -> String {
    match rel.rfind('/') {
        Some(slash) => rel[..=slash].to_owned(),
        None => String::new(),
    }
}

fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| match &attr.meta {
        Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Whether these attributes make an item exist only in test builds: `#[cfg(test)]` or
/// `#[cfg(all(test, …))]`. `#[cfg(any(test, …))]` and `#[cfg(not(test))]` do not.
pub(crate) fn is_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.parse_args::<Meta>().is_ok_and(|m| test_only(&m))
    })
}

fn test_only(predicate: &Meta) -> bool {
    match predicate {
        Meta::Path(path) => path.is_ident("test"),
        Meta::List(list) if list.path.is_ident("all") => list
            .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .is_ok_and(|all| all.iter().any(test_only)),
        _ => false,
    }
}

pub(crate) fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

pub(crate) fn impl_item_attrs(item: &ImplItem) -> &[Attribute] {
    match item {
        ImplItem::Const(i) => &i.attrs,
        ImplItem::Fn(i) => &i.attrs,
        ImplItem::Type(i) => &i.attrs,
        ImplItem::Macro(i) => &i.attrs,
        _ => &[],
    }
}

pub(crate) fn trait_item_attrs(item: &TraitItem) -> &[Attribute] {
    match item {
        TraitItem::Const(i) => &i.attrs,
        TraitItem::Fn(i) => &i.attrs,
        TraitItem::Type(i) => &i.attrs,
        TraitItem::Macro(i) => &i.attrs,
        _ => &[],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Loads a tree from `(path, text)` pairs; the first is the root.
    pub(crate) fn tree(files: &[(&str, &str)]) -> Tree {
        let map: HashMap<String, String> = files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        Tree::load(files[0].0, &|rel| map.get(rel).cloned()).expect("fixture loads")
    }

    /// The path of `module` from the root, e.g. `crate::pool::connection`.
    pub(crate) fn module_path(tree: &Tree, module: usize) -> String {
        let mut names = Vec::new();
        let mut at = Some(module);
        while let Some(m) = at {
            names.push(tree.modules[m].name.as_str());
            at = tree.modules[m].parent;
        }
        names.reverse();
        names.join("::")
    }

    fn layout(tree: &Tree) -> Vec<(String, String)> {
        (0..tree.modules.len())
            .map(|m| {
                (
                    module_path(tree, m),
                    tree.files[tree.modules[m].file].rel.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn finds_files_as_rustc_does_and_keeps_inline_modules_in_their_file() {
        let tree = tree(&[
            ("lib.rs", "mod a; pub mod pool; #[cfg(test)] mod tests;"),
            ("a.rs", "mod b; mod inner { mod deep; }"),
            ("a/b.rs", ""),
            ("a/inner/deep.rs", ""),
            (
                "pool/mod.rs",
                "mod connection; #[path = \"odd_name.rs\"] mod odd;",
            ),
            ("pool/connection.rs", ""),
            ("pool/odd_name.rs", ""),
        ]);
        let expected = [
            ("crate", "lib.rs"),
            ("crate::a", "a.rs"),
            ("crate::a::b", "a/b.rs"),
            ("crate::a::inner", "a.rs"),
            ("crate::a::inner::deep", "a/inner/deep.rs"),
            ("crate::pool", "pool/mod.rs"),
            ("crate::pool::connection", "pool/connection.rs"),
            ("crate::pool::odd", "pool/odd_name.rs"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(m, f)| ((*m).to_owned(), (*f).to_owned()))
            .collect();
        assert_eq!(layout(&tree), expected);
        assert_eq!(tree.files.len(), 7, "tests.rs is not loaded");
    }

    #[test]
    fn test_items_are_left_out() {
        let tree = tree(&[(
            "lib.rs",
            "pub fn a() {} #[cfg(test)] fn helper() {} #[cfg(all(unix, test))] mod t {} \
             #[cfg(any(test, feature = \"x\"))] fn kept() {} #[cfg(not(test))] fn also() {}",
        )]);
        let names: Vec<String> = tree.modules[ROOT]
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Fn(f) => Some(f.sig.ident.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["a", "kept", "also"]);
        assert!(tree.modules[ROOT].children.is_empty());
    }

    #[test]
    fn a_missing_module_file_is_an_error() {
        let Err(err) = Tree::load("lib.rs", &|rel| {
            (rel == "lib.rs").then(|| "mod gone;".to_owned())
        }) else {
            panic!("a tree without gone.rs loaded");
        };
        assert!(format!("{err:#}").contains("gone.rs"), "{err:#}");
    }
}
