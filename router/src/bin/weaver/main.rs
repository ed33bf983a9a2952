//! The `weaver` binary: the program lives in [`router::cmd`], so that the one-binary image can run
//! it too.

fn main() -> std::process::ExitCode {
    router::cmd::main()
}
