//! `/w-noop/w`: execs its arguments at once (for containers that never get `ethwe`).

fn main() {
    weavewait::run(weavewait::Mode::Noop)
}
