//! From the tree to the flat program: short-circuit jumps, then jump
//! threading.

use super::*;

/// Lays the tree out as a program: each primitive becomes one instruction
/// whose jumps encode `and`, `or` and `not` (short-circuit, like BPF).
/// Children are generated before their parents, so every jump goes to a
/// lower index (or ACCEPT/REJECT). The walk uses an explicit stack: a long
/// `a or b or c ...` chain is a deep tree.
pub(super) fn codegen(nodes: &[Node], root: usize) -> Result<(Vec<Insn>, u32), Error> {
    enum Task {
        /// Generate `node`, jumping to `on_true` / `on_false`.
        Gen(usize, u32, u32),
        /// Generate the left side of an `and` whose right side was just
        /// generated: true goes to the right side's entry.
        AndLeft(usize, u32),
        /// Likewise for `or`: false goes to the right side's entry.
        OrLeft(usize, u32),
    }
    let mut insns: Vec<Insn> = Vec::new();
    let mut entry = ACCEPT;
    let mut stack = vec![Task::Gen(root, ACCEPT, REJECT)];
    while let Some(task) = stack.pop() {
        match task {
            Task::Gen(n, on_true, on_false) => match nodes.get(n) {
                Some(&Node::Test(test)) => {
                    entry = u32::try_from(insns.len())
                        .ok()
                        .filter(|&i| i < REJECT)
                        .ok_or_else(|| Error::new(1, "expression too long".into()))?;
                    insns.push(Insn {
                        test,
                        on_true,
                        on_false,
                    });
                }
                Some(&Node::Not(a)) => stack.push(Task::Gen(a, on_false, on_true)),
                Some(&Node::And(a, b)) => {
                    stack.push(Task::AndLeft(a, on_false));
                    stack.push(Task::Gen(b, on_true, on_false));
                }
                Some(&Node::Or(a, b)) => {
                    stack.push(Task::OrLeft(a, on_true));
                    stack.push(Task::Gen(b, on_true, on_false));
                }
                None => return Err(Error::new(1, "internal error: bad node".into())),
            },
            Task::AndLeft(a, on_false) => stack.push(Task::Gen(a, entry, on_false)),
            Task::OrLeft(a, on_true) => stack.push(Task::Gen(a, on_true, entry)),
        }
    }
    Ok((insns, entry))
}

/// What a field test's outcome tells about another field test on the same
/// bytes: `Some(result)` when `test` is decided by `fact` having been
/// `outcome`.
pub(super) fn implied(fact: &Field, outcome: bool, test: &Field) -> Option<bool> {
    if fact.src != test.src || fact.mask != test.mask {
        return None;
    }
    if fact.cmp == test.cmp && fact.k == test.k {
        return Some(outcome);
    }
    // `(x & mask) == v` known: every other comparison of `x & mask` is.
    (fact.cmp == Cmp::Eq && outcome).then(|| test.cmp.test(fact.k, test.k))
}

/// Most facts remembered per instruction (the rest are forgotten, which
/// only threads fewer jumps).
pub(super) const MAX_FACTS: usize = 32;

/// Jump threading, as libpcap's optimizer does for the same fields: an
/// edge that reaches a field test whose outcome is already decided by the
/// tests on every path to it (`ether[12:2] = 0x86dd` true, then
/// `ether[12:2] = 0x800`) jumps straight to that test's successor. The
/// skipped test reads bytes an earlier test has read, so skipping it never
/// hides a load beyond the frame: the results are the same, with fewer
/// tests per frame. Jumps still only go to lower indices.
pub(super) fn thread_jumps(insns: &mut [Insn], entry: u32) {
    if (entry as usize) >= insns.len() {
        return;
    }
    // Facts true on every path into each instruction; `None`: not reached
    // yet.
    let mut facts: Vec<Option<Vec<(Field, bool)>>> = vec![None; insns.len()];
    facts[entry as usize] = Some(Vec::new());
    // Predecessors have higher indices: walk down from the entry.
    for i in (0..=entry as usize).rev() {
        let Some(here) = facts[i].take() else {
            continue;
        };
        for outcome in [true, false] {
            let mut edge = here.clone();
            if let Test::Field(f) = insns[i].test {
                edge.retain(|(g, _)| *g != f);
                edge.push((f, outcome));
                if edge.len() > MAX_FACTS {
                    edge.remove(0);
                }
            }
            let mut target = if outcome {
                insns[i].on_true
            } else {
                insns[i].on_false
            };
            while let Some(t) = insns.get(target as usize) {
                let Test::Field(tf) = t.test else {
                    break;
                };
                let Some(result) = edge.iter().find_map(|(f, o)| implied(f, *o, &tf)) else {
                    break;
                };
                target = if result { t.on_true } else { t.on_false };
            }
            if outcome {
                insns[i].on_true = target;
            } else {
                insns[i].on_false = target;
            }
            if let Some(slot) = facts.get_mut(target as usize) {
                *slot = Some(match slot.take() {
                    None => edge,
                    Some(prev) => prev.into_iter().filter(|x| edge.contains(x)).collect(),
                });
            }
        }
    }
}
