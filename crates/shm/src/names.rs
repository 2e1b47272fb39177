//! The names of an instance's segments under [`crate::SHM_DIR`]: every process of one
//! `vr-stream --instance NAME` (and `dashboard --instance NAME`) finds its segments by them.

/// Default instance name: the prefix of every segment under /dev/shm.
pub const DEFAULT_INSTANCE: &str = "vr-stream";

/// Segment names of instance `inst`: (control, frame ring, bitstream queue).
pub fn segment_names(inst: &str) -> (String, String, String) {
    (
        format!("{inst}-ctl"),
        format!("{inst}-frames"),
        format!("{inst}-bits"),
    )
}

/// Name of the web queue of instance `inst`: the encoder's copy of each access unit for
/// the web stage (a [`crate::bitstream::BitstreamQueue`] with a lossy writer).
pub fn web_queue_name(inst: &str) -> String {
    format!("{inst}-web")
}

/// Name of the stats segment of instance `inst` (what `dashboard` reads).
pub fn stats_name(inst: &str) -> String {
    format!("{inst}-stats")
}
