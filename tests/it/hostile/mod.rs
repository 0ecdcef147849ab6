//! Hostile clients against the real binary: each attack runs against a node
//! while an honest client registers and logs in beside it, and the test
//! asserts the attacker is cut off with the right error and what the attack
//! cost the node stays within a stated bound.

mod connections;
mod guessing;
mod xml;
