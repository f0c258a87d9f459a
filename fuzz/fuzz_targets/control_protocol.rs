//! The supervisor's control protocol decoder, fed what any client of the socket can send
//! (and the CLI's decoder, fed what a supervisor answers): no input may panic, a request
//! that decodes names a service the way the supervisor expects, and what the supervisor
//! would answer is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lkinit::supervisor::protocol::{MAX_REQUEST, Op, Response};

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_REQUEST {
        return;
    }
    match Op::decode(data) {
        Ok(op) => {
            // What decodes encodes back to one line that decodes the same.
            let line = op.encode();
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(Op::decode(line.trim_end().as_bytes()), Ok(op));
        }
        Err(e) => {
            // The error goes back to the client as one line.
            let answer = Response::error(e).encode();
            assert!(!answer[..answer.len() - 1].contains('\n'));
        }
    }
    let _ = Response::decode(data);
});
