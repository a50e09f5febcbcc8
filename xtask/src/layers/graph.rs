//! The module graph's cycles: strongly connected components (Tarjan's algorithm) and one
//! shortest cycle through a component, to print.

use std::collections::VecDeque;

/// A directed graph on the nodes `0..n`.
#[derive(Debug)]
pub(crate) struct Graph {
    out: Vec<Vec<usize>>,
}

impl Graph {
    pub(crate) fn new(nodes: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut out = vec![Vec::new(); nodes];
        for (from, to) in edges {
            out[from].push(to);
        }
        for targets in &mut out {
            targets.sort_unstable();
            targets.dedup();
        }
        Graph { out }
    }

    /// The strongly connected components that hold a cycle (more than one node, or a node
    /// with an edge to itself), each sorted, in order of their smallest node.
    pub(crate) fn cycles(&self) -> Vec<Vec<usize>> {
        let mut tarjan = Tarjan {
            out: &self.out,
            index: vec![None; self.out.len()],
            low: vec![0; self.out.len()],
            on_stack: vec![false; self.out.len()],
            stack: Vec::new(),
            next: 0,
            components: Vec::new(),
        };
        for node in 0..self.out.len() {
            if tarjan.index[node].is_none() {
                tarjan.visit(node);
            }
        }
        let mut cycles: Vec<Vec<usize>> = tarjan
            .components
            .into_iter()
            .filter(|c| c.len() > 1 || self.out[c[0]].contains(&c[0]))
            .collect();
        cycles.sort();
        cycles
    }

    /// A shortest cycle from `start` back to it through the nodes of `within` (a component
    /// that holds `start`): the nodes in order, `start` first and not repeated at the end.
    pub(crate) fn shortest_cycle(&self, start: usize, within: &[usize]) -> Vec<usize> {
        let mut came_from = vec![None; self.out.len()];
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for &next in &self.out[node] {
                if next == start {
                    // Back from `node` to `start`, whose `came_from` is `None`.
                    let mut cycle = vec![node];
                    let mut at = node;
                    while let Some(prev) = came_from[at] {
                        cycle.push(prev);
                        at = prev;
                    }
                    cycle.reverse();
                    return cycle;
                }
                if within.contains(&next) && came_from[next].is_none() && next != start {
                    came_from[next] = Some(node);
                    queue.push_back(next);
                }
            }
        }
        vec![start]
    }
}

struct Tarjan<'g> {
    out: &'g [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    // Recursive: module graphs are a few dozen nodes deep at most.
    fn visit(&mut self, node: usize) {
        self.index[node] = Some(self.next);
        self.low[node] = self.next;
        self.next += 1;
        self.stack.push(node);
        self.on_stack[node] = true;
        let out = self.out;
        for &next in &out[node] {
            match self.index[next] {
                None => {
                    self.visit(next);
                    self.low[node] = self.low[node].min(self.low[next]);
                }
                Some(index) if self.on_stack[next] => {
                    self.low[node] = self.low[node].min(index);
                }
                Some(_) => {}
            }
        }
        if Some(self.low[node]) == self.index[node] {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            component.sort_unstable();
            self.components.push(component);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_cycle_and_nothing_else() {
        // 0 -> 1 -> 2 -> 0 is a cycle, 2 -> 3 leaves it; 3 <-> 4 is another; 5 -> 5 a
        // self-loop; 6 -> 0 and 4 -> 7 only lead into or out of cycles.
        let graph = Graph::new(
            8,
            [
                (0, 1),
                (1, 2),
                (2, 0),
                (2, 3),
                (3, 4),
                (4, 3),
                (5, 5),
                (6, 0),
                (4, 7),
            ],
        );
        assert_eq!(graph.cycles(), vec![vec![0, 1, 2], vec![3, 4], vec![5]]);
    }

    #[test]
    fn a_graph_without_cycles_has_none() {
        let graph = Graph::new(4, [(0, 1), (1, 2), (0, 2), (2, 3), (0, 3)]);
        assert!(graph.cycles().is_empty());
    }

    #[test]
    fn the_cycle_printed_is_a_shortest_one() {
        // Two ways back to 0: 0 -> 1 -> 2 -> 3 -> 0 and 0 -> 4 -> 0.
        let graph = Graph::new(5, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (4, 0), (1, 4)]);
        let component = &graph.cycles()[0];
        assert_eq!(component, &vec![0, 1, 2, 3, 4]);
        assert_eq!(graph.shortest_cycle(0, component), vec![0, 4]);
        assert_eq!(graph.shortest_cycle(2, component), vec![2, 3, 0, 1]);
        assert_eq!(Graph::new(1, [(0, 0)]).shortest_cycle(0, &[0]), vec![0]);
    }
}
