//! `/w-nomcast/w`: waits for `ethwe` UP, then execs its arguments.

fn main() {
    weavewait::run(weavewait::Mode::Interface)
}
