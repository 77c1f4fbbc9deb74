//! Splitting a plan's moves into waves.
//!
//! A wave holds at most `budget` moves touching any one backend, as source or
//! target (CORMO-RAN's per-server migration-downtime budget, constraint 20,
//! counted in moves). The executor runs the waves in order.
//!
//! Greedy, busiest endpoints first: each move takes the earliest wave in which
//! both its backends still have budget. A backend that both sends and receives
//! gets its incoming moves only after its outgoing ones, so the room a move
//! relies on is free before it lands (the heuristic's plans never have such
//! backends except around `MakeRoom` moves; the exact solver's may). Between
//! two backends that each send to the other this order cannot hold both ways;
//! the later-scheduled direction then waits only for the moves already placed.
//!
//! The wave count is at least max over backends of ⌈moves touching it /
//! budget⌉; the greedy reaches it when no backend both sends and receives and
//! the moves form a star or a bipartite graph whose busy side is one backend,
//! and stays within about twice it otherwise.

/// Wave (1-based) of each move `(from, to)`, in the input order. `from` is
/// `None` for a unit that has no listed backend (only the target counts).
pub(crate) fn schedule(moves: &[(Option<usize>, usize)], nb: usize, budget: usize) -> Vec<u32> {
    let budget = budget.max(1);
    let mut sends = vec![0usize; nb];
    let mut recvs = vec![0usize; nb];
    for &(f, t) in moves {
        if let Some(f) = f {
            sends[f] += 1;
        }
        recvs[t] += 1;
    }
    let mixed = |b: usize| sends[b] > 0 && recvs[b] > 0;
    let degree = |b: usize| sends[b] + recvs[b];
    let mut order: Vec<usize> = (0..moves.len()).collect();
    order.sort_by_key(|&i| {
        let (f, t) = moves[i];
        let frees = f.is_some_and(mixed);
        let busiest = f.map_or(0, degree).max(degree(t));
        (!frees, std::cmp::Reverse(busiest), i)
    });

    // used[b][w]: moves touching b in wave w + 1.
    let mut used: Vec<Vec<usize>> = vec![Vec::new(); nb];
    let mut last_out = vec![0u32; nb];
    let mut wave_of = vec![0u32; moves.len()];
    for i in order {
        let (f, t) = moves[i];
        let mut w = if mixed(t) { last_out[t] + 1 } else { 1 };
        loop {
            let slot = (w - 1) as usize;
            let free = |b: usize| used[b].get(slot).copied().unwrap_or(0) < budget;
            if free(t) && f.is_none_or(free) {
                break;
            }
            w += 1;
        }
        let slot = (w - 1) as usize;
        for b in f.into_iter().chain(std::iter::once(t)) {
            if used[b].len() <= slot {
                used[b].resize(slot + 1, 0);
            }
            used[b][slot] += 1;
        }
        if let Some(f) = f {
            last_out[f] = last_out[f].max(w);
        }
        wave_of[i] = w;
    }
    wave_of
}

#[cfg(test)]
mod tests {
    use super::schedule;

    fn touching(moves: &[(Option<usize>, usize)], waves: &[u32], b: usize, w: u32) -> usize {
        moves
            .iter()
            .zip(waves)
            .filter(|(&(f, t), &mw)| mw == w && (f == Some(b) || t == b))
            .count()
    }

    #[test]
    fn star_uses_the_lower_bound() {
        // 10 moves out of backend 0 into 1..=5, budget 3: ⌈10/3⌉ = 4 waves.
        let moves: Vec<_> = (0..10).map(|i| (Some(0), 1 + i % 5)).collect();
        let w = schedule(&moves, 6, 3);
        assert_eq!(w.iter().copied().max(), Some(4));
        for wave in 1..=4 {
            for b in 0..6 {
                assert!(touching(&moves, &w, b, wave) <= 3);
            }
        }
    }

    #[test]
    fn a_backend_receives_after_it_has_sent() {
        // 0 -> 1 must free room on 1 before 2 -> 1... here 1 sends to 3 and
        // receives from 2: its outgoing move goes first.
        let moves = vec![(Some(2), 1), (Some(1), 3)];
        let w = schedule(&moves, 4, 5);
        assert!(w[1] < w[0], "{w:?}");
    }

    #[test]
    fn placements_count_only_their_target() {
        let moves = vec![(None, 0), (None, 0), (None, 1)];
        let w = schedule(&moves, 2, 2);
        assert_eq!(w, vec![1, 1, 1]);
    }

    #[test]
    fn empty() {
        assert!(schedule(&[], 3, 1).is_empty());
    }
}
