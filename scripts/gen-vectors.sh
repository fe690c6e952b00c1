#!/usr/bin/env bash
# Regenerates the test vectors in tests/vectors/ (FORMAT.md §1) from the
# deterministic generator examples/gen_vectors.rs. Review the diff and commit
# it with the format change that caused it; tests/vectors.rs fails while the
# committed vectors differ from what the generator writes.
set -euo pipefail

cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
cargo run --locked --example gen_vectors -- tests/vectors
