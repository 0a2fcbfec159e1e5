//! The pod's network holder: the first container of every pod runs this and
//! nothing else, so the pod's network namespace (and its published ports)
//! outlives restarts of the pod's real containers. It sleeps forever; the
//! agent stops it with SIGKILL.

fn main() {
    loop {
        std::thread::park();
    }
}
