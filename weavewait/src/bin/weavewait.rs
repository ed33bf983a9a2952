//! `/w/w`: waits for `ethwe` UP and the `224.0.0.0/4` route, then execs its arguments.

fn main() {
    weavewait::run(weavewait::Mode::InterfaceAndMulticast)
}
