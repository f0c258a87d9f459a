//! Giving memory back after a burst of work.
//!
//! Launching and cleaning up containers (a boot, a crash loop, a restart) allocates and frees
//! on several threads at once; malloc keeps what was freed in holes between live blocks,
//! and the supervisor's resident size would stay at its high-water mark. Once the work has
//! been quiet for a moment, the free pages are handed back (`malloc_trim`). Nothing wakes
//! an idle supervisor for this: the trim follows work, never a clock.

use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::Notify;

/// How long the work must be quiet before the trim.
const QUIET: Duration = Duration::from_secs(1);

fn work_done() -> &'static Notify {
    static N: OnceLock<Notify> = OnceLock::new();
    N.get_or_init(Notify::new)
}

/// Says that a piece of work that allocated has ended.
pub fn after_work() {
    work_done().notify_one();
}

/// Trims once the work has been quiet for [`QUIET`]; runs for the life of the supervisor.
pub async fn trimmer() {
    loop {
        work_done().notified().await;
        // More work within QUIET postpones the trim.
        while tokio::time::timeout(QUIET, work_done().notified())
            .await
            .is_ok()
        {}
        trim();
    }
}

fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and releases the allocator's free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
