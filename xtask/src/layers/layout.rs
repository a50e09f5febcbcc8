//! The per-file rules: how many lines a file has outside its test module, and whether that
//! test module is its last item.

use syn::Item;
use syn::spanned::Spanned as _;

use super::modules::{SourceFile, is_test, item_attrs};

/// What one file's layout is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Its lines outside its top-level `#[cfg(test)]` modules.
    pub(crate) code_lines: usize,
    /// The first non-test item after a test module, if any.
    pub(crate) after_tests: Option<AfterTests>,
}

/// A non-test item that follows a `#[cfg(test)]` module.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AfterTests {
    /// The test module's name and its first line (that of its first attribute).
    pub(crate) tests: String,
    pub(crate) tests_line: usize,
    /// The item, e.g. `fn helper`, and its first line.
    pub(crate) item: String,
    pub(crate) item_line: usize,
}

pub(crate) fn layout(file: &SourceFile) -> Layout {
    let mut test_lines = 0;
    let mut first_tests: Option<(String, usize)> = None;
    let mut after_tests = None;
    for item in &file.ast.items {
        let span = item.span();
        let (start, end) = (span.start().line, span.end().line);
        if is_test(item_attrs(item)) {
            if let Item::Mod(tests) = item {
                test_lines += end + 1 - start;
                first_tests.get_or_insert((tests.ident.to_string(), start));
            }
        } else if let (Some((tests, tests_line)), None) = (&first_tests, &after_tests) {
            after_tests = Some(AfterTests {
                tests: tests.clone(),
                tests_line: *tests_line,
                item: describe(item),
                item_line: start,
            });
        }
    }
    Layout {
        code_lines: file.lines.saturating_sub(test_lines),
        after_tests,
    }
}

/// `fn name`, `impl Type`, `use …`: enough to find the item.
fn describe(item: &Item) -> String {
    let named = |kind: &str, ident: &syn::Ident| format!("{kind} {ident}");
    match item {
        Item::Const(i) => named("const", &i.ident),
        Item::Enum(i) => named("enum", &i.ident),
        Item::Fn(i) => named("fn", &i.sig.ident),
        Item::Mod(i) => named("mod", &i.ident),
        Item::Static(i) => named("static", &i.ident),
        Item::Struct(i) => named("struct", &i.ident),
        Item::Trait(i) => named("trait", &i.ident),
        Item::Type(i) => named("type", &i.ident),
        Item::Union(i) => named("union", &i.ident),
        Item::Macro(i) => match &i.ident {
            Some(ident) => format!("macro_rules! {ident}"),
            None => "a macro call".to_owned(),
        },
        Item::Impl(i) => match &*i.self_ty {
            syn::Type::Path(p) => match p.path.segments.last() {
                Some(last) => format!("impl {}", last.ident),
                None => "impl".to_owned(),
            },
            _ => "impl".to_owned(),
        },
        Item::Use(_) => "use".to_owned(),
        _ => "an item".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile {
            rel: "f.rs".to_owned(),
            lines: text.lines().count(),
            ast: syn::parse_file(text).expect("parses"),
        }
    }

    #[test]
    fn the_test_module_does_not_count() {
        let code = "pub fn f() {}\n".repeat(400);
        let tests = format!(
            "#[cfg(test)]\nmod tests {{\n{}}}\n",
            "    fn t() {}\n".repeat(300)
        );
        let layout = layout(&file(&format!("{code}{tests}")));
        assert_eq!(
            layout,
            Layout {
                code_lines: 400,
                after_tests: None
            }
        );
        // Without `#[cfg(test)]` the module is code like any other.
        let untested = tests.replace("#[cfg(test)]\n", "");
        assert_eq!(
            layout_of(&format!("{code}{untested}")).code_lines,
            400 + 302
        );
    }

    fn layout_of(text: &str) -> Layout {
        layout(&file(text))
    }

    #[test]
    fn items_after_the_tests_are_reported() {
        let text = "fn a() {}\n\n/// Tests.\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n\
                    #[cfg(test)]\nfn test_helper() {}\n\nimpl Foo {\n}\nfn b() {}\n";
        assert_eq!(
            layout_of(text),
            Layout {
                code_lines: 13 - 5,
                after_tests: Some(AfterTests {
                    tests: "tests".to_owned(),
                    tests_line: 3,
                    item: "impl Foo".to_owned(),
                    item_line: 11,
                }),
            }
        );
        let last = "fn a() {}\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod proptests {}\n";
        assert_eq!(layout_of(last).after_tests, None);
        assert_eq!(layout_of(last).code_lines, 1);
    }
}
