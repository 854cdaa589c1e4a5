//! The `sessiontrail` binary: see [`sessiontrail_collector::cli`].

fn main() -> std::process::ExitCode {
    sessiontrail_collector::cli::main()
}
