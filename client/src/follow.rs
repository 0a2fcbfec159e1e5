//! Following a view of the master by long poll: ask for what is newer than
//! the last revision read, and after a failure wait (longer each time, up
//! to a bound) and read the whole view again, since the master may have
//! restarted on another store.

use std::future::Future;
use std::time::Duration;

use berth_model::api::Assignments;
use berth_model::endpoints::EndpointsView;
use berth_model::route::RoutesView;
use tokio::sync::watch;

/// A view that carries the store revision it was read at.
pub trait Revisioned {
    /// The revision.
    fn revision(&self) -> u64;
}

impl Revisioned for RoutesView {
    fn revision(&self) -> u64 {
        self.revision
    }
}

impl Revisioned for EndpointsView {
    fn revision(&self) -> u64 {
        self.revision
    }
}

impl Revisioned for Assignments {
    fn revision(&self) -> u64 {
        self.revision
    }
}

/// Pauses between failed reads: `first`, doubling up to `max`, and
/// `first` again after a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Pauses from `first` doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The same pause after every failure.
    pub const fn fixed(pause: Duration) -> Self {
        Self::new(pause, pause)
    }

    /// The pause after one more failure.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// A read succeeded: the next failure pauses `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Where a follower is: the revision to read after, and its backoff. The
/// loop around it stays the caller's, for a caller that does more than
/// publish (the agent's assignments also retry failed starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    after: Option<u64>,
    backoff: Backoff,
}

impl Cursor {
    /// A follower that has read nothing yet.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            after: None,
            backoff,
        }
    }

    /// The revision the next read waits to pass; `None` reads at once.
    pub fn after(&self) -> Option<u64> {
        self.after
    }

    /// A view at `revision` was read.
    pub fn read(&mut self, revision: u64) {
        self.after = Some(revision);
        self.backoff.reset();
    }

    /// A read failed: how long to pause. The next read is a whole one.
    pub fn failed(&mut self) -> Duration {
        self.after = None;
        self.backoff.failed()
    }
}

/// Follows a view: `fetch(after)` reads it (a long poll once `after` is
/// known), each new answer goes to `out`, each failure to `failed` before
/// the pause. Returns once nobody receives from `out`.
pub async fn follow<T, E, F, Fut>(
    backoff: Backoff,
    mut fetch: F,
    out: &watch::Sender<Option<T>>,
    mut failed: impl FnMut(&E),
) where
    T: Revisioned + PartialEq,
    F: FnMut(Option<u64>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut cursor = Cursor::new(backoff);
    while !out.is_closed() {
        match fetch(cursor.after()).await {
            Ok(view) => {
                cursor.read(view.revision());
                out.send_if_modified(|current| {
                    if current.as_ref() == Some(&view) {
                        return false;
                    }
                    *current = Some(view);
                    true
                });
            }
            Err(e) => {
                failed(&e);
                tokio::time::sleep(cursor.failed()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_bound_and_starts_over_after_a_success() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(200), ms(2000));
        let pauses: Vec<_> = (0..6).map(|_| backoff.failed()).collect();
        assert_eq!(
            pauses,
            [ms(200), ms(400), ms(800), ms(1600), ms(2000), ms(2000)]
        );
        backoff.reset();
        assert_eq!(backoff.failed(), ms(200));
        let mut fixed = Backoff::fixed(ms(1000));
        assert_eq!([fixed.failed(), fixed.failed()], [ms(1000), ms(1000)]);
    }

    #[test]
    fn a_cursor_resumes_after_what_it_read_and_rereads_after_a_failure() {
        let mut cursor = Cursor::new(Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(4),
        ));
        assert_eq!(cursor.after(), None);
        cursor.read(7);
        assert_eq!(cursor.after(), Some(7));
        assert_eq!(cursor.failed(), Duration::from_millis(1));
        assert_eq!(cursor.after(), None, "a failure reads the whole view again");
        assert_eq!(cursor.failed(), Duration::from_millis(2));
        cursor.read(9);
        assert_eq!(cursor.after(), Some(9));
        assert_eq!(cursor.failed(), Duration::from_millis(1), "backoff reset");
    }
}
