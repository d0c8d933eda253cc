//! Segments that name other segments: a rule may not lead back to its
//! own segment, however many segments lie between.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

/// The chain of segments from `segment` back to itself if its rule named
/// `names`, given what every other segment names (`graph`); `None` when
/// there is no cycle.
pub fn cycle(segment: Uuid, names: &[Uuid], graph: &HashMap<Uuid, Vec<Uuid>>) -> Option<Vec<Uuid>> {
    let mut seen = HashSet::new();
    // Depth first, keeping the path to report it.
    let mut stack: Vec<(Uuid, Vec<Uuid>)> =
        names.iter().map(|id| (*id, vec![segment, *id])).collect();
    while let Some((at, path)) = stack.pop() {
        if at == segment {
            return Some(path);
        }
        if !seen.insert(at) {
            continue;
        }
        for next in graph.get(&at).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(*next);
            stack.push((*next, longer));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_segment_naming_itself_is_a_cycle() {
        assert_eq!(
            cycle(id(1), &[id(1)], &HashMap::new()),
            Some(vec![id(1), id(1)])
        );
    }

    #[test]
    fn a_cycle_through_other_segments_is_reported_with_its_path() {
        // 1 -> 2 -> 3 -> 1
        let graph = HashMap::from([(id(2), vec![id(3)]), (id(3), vec![id(1)])]);
        assert_eq!(
            cycle(id(1), &[id(2)], &graph),
            Some(vec![id(1), id(2), id(3), id(1)])
        );
    }

    #[test]
    fn shared_descendants_are_not_a_cycle() {
        // 1 -> 2 -> 4, 1 -> 3 -> 4
        let graph = HashMap::from([(id(2), vec![id(4)]), (id(3), vec![id(4)])]);
        assert_eq!(cycle(id(1), &[id(2), id(3)], &graph), None);
    }
}
