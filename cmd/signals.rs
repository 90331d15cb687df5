use arch_archiver::CancellationToken;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// SIGINT and SIGTERM cancel the returned token (the engine then stops
/// every pool, indexes what it stored and returns). A second signal exits
/// at once with 130.
pub fn install() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    if let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) {
        std::thread::spawn(move || {
            for _ in signals.forever() {
                if t.is_cancelled() {
                    std::process::exit(crate::exit::INTERRUPTED);
                }
                t.cancel();
            }
        });
    }
    token
}
