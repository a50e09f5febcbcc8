//! `cargo xtask layers`: checks the library crates' module structure: no import cycles
//! between their modules, no file over [`MAX_LINES`] lines outside its tests, and each
//! file's test module as its last item.

mod graph;
mod layout;
mod modules;
mod resolve;
mod uses;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use graph::Graph;
use layout::{AfterTests, layout};
use modules::Tree;
use resolve::{Resolver, Target};
use uses::named_paths;

/// The crates checked, each from its `src/lib.rs`.
const CRATES: &[&str] = &[
    "discovery-core",
    "consul-api",
    "grpc-register",
    "grpc-resolve",
    "health",
    "consul-dev",
];

/// The most lines a source file may have outside its test module.
const MAX_LINES: usize = 500;

/// Runs the check on the workspace at `root`; `args` may be `--verbose` (`-v`), which also
/// prints every edge and every `crate::`/`self::`/`super::` path it could not resolve.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut verbose = false;
    for arg in args {
        match arg.as_str() {
            "-v" | "--verbose" => verbose = true,
            other => bail!("layers: unknown argument {other:?} (only --verbose)"),
        }
    }
    let (mut cycles, mut oversized, mut after_tests) = (0, 0, 0);
    for name in CRATES {
        let src = root.join(name).join("src");
        let tree = Tree::load("lib.rs", &|rel| std::fs::read_to_string(src.join(rel)).ok())
            .with_context(|| format!("layers: {name}"))?;
        let report = Report::new(name, &tree);
        report.print(verbose);
        cycles += report.cycles.len();
        oversized += report.oversized.len();
        after_tests += report.after_tests.len();
    }
    if cycles + oversized + after_tests > 0 {
        bail!(
            "layers: {cycles} import cycle(s), {oversized} file(s) over {MAX_LINES} lines, \
             {after_tests} file(s) with items after their tests"
        );
    }
    println!("layers: no cycles, no file over {MAX_LINES} lines, tests last everywhere");
    Ok(())
}

/// What one crate's check found.
#[derive(Debug)]
struct Report {
    krate: String,
    /// The files, by node number.
    files: Vec<String>,
    /// `(from, to)` file pairs and the names that make `from` depend on `to`.
    edges: BTreeMap<(usize, usize), BTreeSet<String>>,
    /// Each strongly connected component with a shortest cycle through it.
    cycles: Vec<(Vec<usize>, Vec<usize>)>,
    /// Files over [`MAX_LINES`] lines outside their tests, with that count.
    oversized: Vec<(usize, usize)>,
    after_tests: Vec<(usize, AfterTests)>,
    /// Paths from `crate`, `self` or `super` that did not resolve, with the file.
    unresolved: BTreeSet<(usize, String)>,
}

impl Report {
    fn new(krate: &str, tree: &Tree) -> Report {
        let resolver = Resolver::new(tree);
        let mut edges: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
        let mut unresolved = BTreeSet::new();
        for (index, module) in tree.modules.iter().enumerate() {
            for named in named_paths(&module.items) {
                let Some(target) = resolver.resolve(index, &named.path) else {
                    if matches!(named.path[0].as_str(), "crate" | "self" | "super") {
                        unresolved.insert((module.file, named.path.join("::")));
                    }
                    continue;
                };
                let to = tree.modules[target.module()].file;
                if to == module.file {
                    continue;
                }
                let name = match target {
                    _ if named.glob => format!("{}::*", named.path.join("::")),
                    Target::Item { name, .. } => name,
                    Target::Module(m) => tree.modules[m].name.clone(),
                };
                edges.entry((module.file, to)).or_default().insert(name);
            }
        }
        let graph = Graph::new(tree.files.len(), edges.keys().copied());
        let cycles = graph
            .cycles()
            .into_iter()
            .map(|component| {
                let cycle = graph.shortest_cycle(component[0], &component);
                (component, cycle)
            })
            .collect();
        let mut oversized = Vec::new();
        let mut after_tests = Vec::new();
        for (index, file) in tree.files.iter().enumerate() {
            let layout = layout(file);
            if layout.code_lines > MAX_LINES {
                oversized.push((index, layout.code_lines));
            }
            if let Some(after) = layout.after_tests {
                after_tests.push((index, after));
            }
        }
        Report {
            krate: krate.to_owned(),
            files: tree.files.iter().map(|f| f.rel.clone()).collect(),
            edges,
            cycles,
            oversized,
            after_tests,
            unresolved,
        }
    }

    /// The report's lines, as printed.
    fn lines(&self, verbose: bool) -> Vec<String> {
        let krate = &self.krate;
        let file = |node: usize| self.files[node].as_str();
        let edge = |from: usize, to: usize| {
            let names = self.edges[&(from, to)].iter().cloned().collect::<Vec<_>>();
            format!(
                "{krate}: {} -> {}: {}",
                file(from),
                file(to),
                names.join(", ")
            )
        };
        let mut lines = vec![format!(
            "{krate}: {} files, {} dependencies between them, {} cycle(s)",
            self.files.len(),
            self.edges.len(),
            self.cycles.len()
        )];
        if verbose {
            lines.extend(
                self.edges
                    .keys()
                    .map(|&(from, to)| format!("  {}", edge(from, to))),
            );
            lines.extend(
                self.unresolved.iter().map(|(node, path)| {
                    format!("  {krate}: {}: not resolved: {path}", file(*node))
                }),
            );
        }
        for (component, cycle) in &self.cycles {
            let members: Vec<&str> = component.iter().map(|&n| file(n)).collect();
            lines.push(format!("  cycle among {}", members.join(", ")));
            let mut round: Vec<&str> = cycle.iter().map(|&n| file(n)).collect();
            round.push(file(cycle[0]));
            lines.push(format!("    shortest: {}", round.join(" -> ")));
            for &(from, to) in self.edges.keys() {
                if component.contains(&from) && component.contains(&to) {
                    lines.push(format!("    {}", edge(from, to)));
                }
            }
        }
        for &(node, count) in &self.oversized {
            lines.push(format!(
                "  {krate}: {}: {count} lines outside tests (over {MAX_LINES})",
                file(node)
            ));
        }
        for (node, after) in &self.after_tests {
            lines.push(format!(
                "  {krate}: {}: {} at line {} follows the test module `{}` at line {}",
                file(*node),
                after.item,
                after.item_line,
                after.tests,
                after.tests_line
            ));
        }
        lines
    }

    fn print(&self, verbose: bool) {
        for line in self.lines(verbose) {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::modules::tests::tree;

    fn report(files: &[(&str, &str)]) -> Report {
        Report::new("demo", &tree(files))
    }

    /// Every edge as `from -> to: names`.
    fn edges(report: &Report) -> Vec<String> {
        report
            .edges
            .iter()
            .map(|(&(from, to), names)| {
                let names: Vec<_> = names.iter().cloned().collect();
                format!(
                    "{} -> {}: {}",
                    report.files[from],
                    report.files[to],
                    names.join(", ")
                )
            })
            .collect()
    }

    fn cycles(report: &Report) -> Vec<Vec<&str>> {
        report
            .cycles
            .iter()
            .map(|(component, _)| {
                component
                    .iter()
                    .map(|&n| report.files[n].as_str())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_re_export_does_not_make_a_false_cycle() {
        // pool uses `super::ReplayBody`, which lib.rs re-exports from channel: the edge goes
        // to channel. Were it to go to lib.rs, lib.rs -> pool (its `pool::Pool` path) would
        // close a cycle.
        let report = report(&[
            (
                "lib.rs",
                "mod channel; mod pool; pub use channel::ReplayBody; \
                 pub fn start() { pool::Pool::new(); }",
            ),
            ("channel/mod.rs", "mod replay; pub use replay::ReplayBody;"),
            ("channel/replay.rs", "pub struct ReplayBody;"),
            (
                "pool.rs",
                "use super::ReplayBody; pub struct Pool(ReplayBody);",
            ),
        ]);
        assert_eq!(
            edges(&report),
            [
                "lib.rs -> channel/replay.rs: ReplayBody",
                "lib.rs -> pool.rs: Pool",
                "channel/mod.rs -> channel/replay.rs: ReplayBody",
                "pool.rs -> channel/replay.rs: ReplayBody",
            ]
        );
        assert!(report.cycles.is_empty(), "{:?}", report.lines(true));
    }

    #[test]
    fn a_real_cycle_is_found_and_printed_with_its_names() {
        let report = report(&[
            ("lib.rs", "mod agent; mod client; mod status;"),
            (
                "agent.rs",
                "use crate::client::{Client, Options}; pub struct Agent;",
            ),
            (
                "client.rs",
                "pub struct Client; pub struct Options; fn f() { crate::status::leader(); }",
            ),
            (
                "status.rs",
                "pub fn leader() -> super::agent::Agent { todo!() }",
            ),
        ]);
        assert_eq!(cycles(&report), [["agent.rs", "client.rs", "status.rs"]]);
        let lines = report.lines(false);
        assert_eq!(
            lines,
            [
                "demo: 4 files, 3 dependencies between them, 1 cycle(s)",
                "  cycle among agent.rs, client.rs, status.rs",
                "    shortest: agent.rs -> client.rs -> status.rs -> agent.rs",
                "    demo: agent.rs -> client.rs: Client, Options",
                "    demo: client.rs -> status.rs: leader",
                "    demo: status.rs -> agent.rs: Agent",
            ]
        );
    }

    #[test]
    fn test_code_makes_no_edges() {
        let files = |cfg: &str| {
            [
                (
                    "lib.rs".to_owned(),
                    "mod a; pub struct Root; pub fn f() { a::g(); }".to_owned(),
                ),
                (
                    "a.rs".to_owned(),
                    format!(
                        "pub fn g() {{}}\n\
                         {cfg} use super::*;\n\
                         {cfg} fn helper() -> crate::Root {{ crate::Root }}\n\
                         {cfg} mod tests {{ use super::super::*; use crate::Root; }}\n"
                    ),
                ),
            ]
        };
        let run = |cfg: &str| {
            let files = files(cfg);
            let files: Vec<(&str, &str)> = files
                .iter()
                .map(|(p, t)| (p.as_str(), t.as_str()))
                .collect();
            report(&files)
        };
        let tested = run("#[cfg(test)]");
        assert_eq!(edges(&tested), ["lib.rs -> a.rs: g"]);
        assert!(tested.cycles.is_empty());
        // The same code outside tests is a cycle, through the glob and the paths.
        let untested = run("");
        assert_eq!(
            edges(&untested),
            [
                "lib.rs -> a.rs: g",
                "a.rs -> lib.rs: Root, super::*, super::super::*"
            ]
        );
        assert_eq!(cycles(&untested), [["lib.rs", "a.rs"]]);
    }

    #[test]
    fn a_path_in_code_is_an_edge_like_a_use() {
        let report = report(&[
            ("lib.rs", "mod conn; mod pool; mod util;"),
            (
                "conn.rs",
                "pub(crate) fn open() -> usize { \
                     let p = crate::pool::Pool::new(); \
                     format!(\"{}\", super::util::NAME).len() \
                 }",
            ),
            (
                "pool.rs",
                "pub struct Pool; impl Pool { pub fn new() -> Self { Pool } }",
            ),
            ("util.rs", "pub const NAME: &str = \"x\";"),
        ]);
        assert_eq!(
            edges(&report),
            ["conn.rs -> pool.rs: Pool", "conn.rs -> util.rs: NAME"]
        );
    }

    #[test]
    fn inline_modules_belong_to_their_file_and_unknown_names_are_ignored() {
        let report = report(&[
            ("lib.rs", "mod a; mod b;"),
            (
                "a.rs",
                "mod inner { pub struct X; pub fn y() { super::super::b::z(); } } \
                 pub use inner::X; use std::sync::Arc; fn q() { tokio::spawn(); crate::nowhere::f(); }",
            ),
            ("b.rs", "pub fn z() {} fn w(_: crate::a::X) {}"),
        ]);
        assert_eq!(edges(&report), ["a.rs -> b.rs: z", "b.rs -> a.rs: X"]);
        assert_eq!(cycles(&report), [["a.rs", "b.rs"]]);
        let unresolved: Vec<&str> = report.unresolved.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(unresolved, ["crate::nowhere::f"]);
    }

    #[test]
    fn oversized_files_and_late_tests_are_reported() {
        let long = format!(
            "{}#[cfg(test)]\nmod tests {{}}\nfn late() {{}}\n",
            "fn f() {}\n".repeat(501)
        );
        let report = report(&[
            ("lib.rs", "mod long; mod short;"),
            ("long.rs", &long),
            ("short.rs", ""),
        ]);
        assert_eq!(
            report.lines(false)[1..],
            [
                "  demo: long.rs: 502 lines outside tests (over 500)",
                "  demo: long.rs: fn late at line 504 follows the test module `tests` at line 502",
            ]
        );
    }
}
