//! Prints the directory of the testkit's tiny model pair (`model.gguf`,
//! `mmproj.gguf`), generating it on first use: the Python and C tests take
//! their model from there.
//!
//! `SMOLVLM_TINY_MODEL_DIR=$(cargo run --release --example tiny_model_dir)`

fn main() {
    let pair = smolvlm_testkit::tiny_model();
    match pair.model.parent() {
        Some(dir) => println!("{}", dir.display()),
        None => {
            eprintln!(
                "the tiny model has no parent directory: {}",
                pair.model.display()
            );
            std::process::exit(1);
        }
    }
}
