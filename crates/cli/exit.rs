//! The exit codes, documented in `smolvlm caption --help` (`help.rs`).

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: every image has a caption (in this run or an earlier one).
    Success,
    /// 1: at least one image has an error record; the others were captioned.
    Failures,
    /// 2: bad usage or config, the model could not be loaded, or records
    /// could not be written.
    Usage,
    /// 130: stopped by SIGINT, SIGTERM or SIGHUP; re-run to resume.
    Interrupted,
}

impl Exit {
    /// The process exit status.
    #[must_use]
    pub fn code(self) -> i32 {
        match self {
            Self::Success => 0,
            Self::Failures => 1,
            Self::Usage => 2,
            Self::Interrupted => 130,
        }
    }

    /// Prints `message` as the reason and returns [`Exit::Usage`].
    #[must_use]
    pub fn usage(message: &str) -> Self {
        eprintln!("smolvlm: {message}");
        Self::Usage
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        // Every code is below 256.
        Self::from(u8::try_from(exit.code()).unwrap_or(1))
    }
}
