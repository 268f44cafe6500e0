//! A real crash of the DR site in the middle of a failover: its daemon,
//! started with `FAILPOINTS=<point>=return` (control/src/dr/crash_point.rs;
//! the test build enables the `failpoints` feature), aborts right after the step's durable mark. The failover command fails;
//! the daemon, restarted without the variable, resumes the failover when
//! the command is given again, from the step the mark names; the vserver
//! is active and a client with its old handles reads every committed byte.
//! Sites on 127.88.NET (common/failover.rs).

use crate::common::failover::*;
use crate::common::nfs::*;
use crate::common::replication::{pattern, runtime};
use crate::common::*;
use nfs3_client::nfs3_types::nfs3::*;

fn crash_and_resume(net: u8, point: &str, resumed_step: &str) {
    let s = failover_sites(&format!("127.88.{net}"), true, true);
    let rt = runtime();
    let files = rt.block_on(async {
        let mut c = mount(&s.a, &s.vs_addr).await;
        let mut files = Vec::new();
        for i in 0..3u64 {
            let data = pattern((48 << 10) + (i as usize) * 1013, 500 + i);
            let fh = create_file(&mut c, &format!("f{i}.bin")).await;
            write_at(&mut c, &fh, 0, &data, stable_how::UNSTABLE).await;
            must("COMMIT", c.commit(&commit_args(&fh))).await;
            files.push((fh, data));
        }
        files
    });
    s.da.kill9();
    s.db.stop();
    let crash_env = format!("FAILPOINTS={point}=return");
    let db = s.b.spawn_daemon_via(&["env", &crash_env]);
    db.wait_ready(&s.b);

    let out = s.b.tandem(&["failover", "vs", "--yes"]);
    assert!(
        !out.status.success(),
        "the failover succeeded although its daemon crashed at {point}:\n{}",
        stdout(&out)
    );
    let status = db.wait_exit();
    assert!(!status.success(), "the daemon exited cleanly: {status:?}");
    let marks = s.b.dir.join("failover").join("vs.toml");
    assert!(
        marks.exists(),
        "no failover mark left after the crash at {point}"
    );

    let db = s.b.start_daemon();
    let text = failover(&s.b, &[]);
    assert!(
        text.contains(&format!(
            "Resumed an interrupted failover from step {resumed_step}"
        )),
        "{text}\nlog:\n{}",
        db.log_text()
    );
    assert!(text.contains("epoch 2"), "{text}");
    assert_eq!(state_at(&s.b), "active");
    assert!(!marks.exists(), "the mark is removed once serving");

    rt.block_on(async {
        let mut c = reconnect(&s.vs_addr, s.a.nfs_port).await;
        assert_files(&mut c, &files, "after the resumed failover").await;
    });
    drop(db);
}

#[test]
fn a_crash_right_after_reserving_resumes_from_reserved() {
    crash_and_resume(1, "failover-reserved", "reserved");
}

#[test]
fn a_crash_right_after_promoting_resumes_from_promoted() {
    crash_and_resume(2, "failover-promoted", "promoted");
}
