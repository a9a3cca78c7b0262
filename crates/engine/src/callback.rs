//! The caller's callbacks as C calls them: a panic never unwinds into C; it
//! stops the native call and is resumed once that call has returned.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// One native call's observer (`false` from it stops the call), with what
/// became of it. It lives on the stack of the call that hands C a pointer
/// to it, for the duration of that call.
pub(crate) struct Observer<'a, A> {
    call: &'a mut dyn FnMut(A) -> bool,
    stopped: bool,
    panic: Option<Box<dyn Any + Send>>,
}

impl<'a, A> Observer<'a, A> {
    pub(crate) fn new(call: &'a mut dyn FnMut(A) -> bool) -> Self {
        Self {
            call,
            stopped: false,
            panic: None,
        }
    }

    /// Tells the observer; whether the native call may go on. After a stop
    /// (or a panic) the observer is not called again.
    pub(crate) fn ask(&mut self, arg: A) -> bool {
        if self.stopped {
            return false;
        }
        match catch_unwind(AssertUnwindSafe(|| (self.call)(arg))) {
            Ok(go_on) => {
                self.stopped = !go_on;
                go_on
            }
            Err(panic) => {
                self.stopped = true;
                self.panic = Some(panic);
                false
            }
        }
    }

    /// After the native call: resumes the observer's panic, if any;
    /// otherwise whether it stopped the call.
    pub(crate) fn finish(self) -> bool {
        if let Some(panic) = self.panic {
            resume_unwind(panic);
        }
        self.stopped
    }
}
