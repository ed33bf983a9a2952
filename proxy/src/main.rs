//! The `weaveproxy` binary: the program lives in [`weaveproxy::cmd`], so that the one-binary image
//! can run it too.

fn main() -> std::process::ExitCode {
    weaveproxy::cmd::main()
}
