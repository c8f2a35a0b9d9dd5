//! Replays every fuzz target's committed corpus (`fuzz/corpus/<target>/`,
//! seeds and whatever a fuzzing run added) through the same entry points
//! the fuzz targets call (`consentry::fuzzing`): none may panic. This is
//! how CI keeps what fuzzing found fixed without running the fuzzer
//! (`scripts/fuzz.sh` does, with the nightly toolchain).

use std::path::Path;

#[test]
fn every_fuzz_corpus_input_is_answered_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in consentry::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("no corpus for `{name}` at {}: {err}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "the corpus of `{name}` is empty");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "`{name}` panicked on {}", input.display());
        }
    }
    // Every target has a fuzz target file of the same name.
    for (name, _) in consentry::fuzzing::TARGETS {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/fuzz_targets/{name}.rs"));
        assert!(file.exists(), "no {}", file.display());
    }
}
