//! The lock state's part of the verify digest (docs/formats.md, "Verify
//! digest"): everything in the table, in its order.

use sha2::{Digest as _, Sha256};

use super::LockState;

fn put_bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u32).to_le_bytes());
    h.update(b);
}

impl LockState {
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tandem-verify-locks\0");
        h.update((self.files.len() as u64).to_le_bytes());
        for (ino, owners) in &self.files {
            h.update(ino.to_le_bytes());
            h.update((owners.len() as u32).to_le_bytes());
            for (owner, pieces) in owners {
                put_bytes(&mut h, owner.host.as_bytes());
                h.update(owner.svid.to_le_bytes());
                put_bytes(&mut h, &owner.oh);
                h.update((pieces.len() as u32).to_le_bytes());
                for p in pieces {
                    h.update(p.range.start.to_le_bytes());
                    h.update(p.range.end.to_le_bytes());
                    h.update([u8::from(p.exclusive)]);
                }
            }
        }
        h.update((self.shares.len() as u64).to_le_bytes());
        for (ino, shares) in &self.shares {
            h.update(ino.to_le_bytes());
            h.update((shares.len() as u32).to_le_bytes());
            for (owner, mode) in shares {
                put_bytes(&mut h, owner.host.as_bytes());
                put_bytes(&mut h, &owner.oh);
                h.update([mode.access, mode.deny]);
            }
        }
        h.update((self.monitored.len() as u64).to_le_bytes());
        for (host, m) in &self.monitored {
            put_bytes(&mut h, host.as_bytes());
            h.update(m.state.to_le_bytes());
            h.update((m.regs.len() as u32).to_le_bytes());
            for (id, private) in &m.regs {
                put_bytes(&mut h, id.my_name.as_bytes());
                h.update(id.prog.to_le_bytes());
                h.update(id.vers.to_le_bytes());
                h.update(id.proc_.to_le_bytes());
                h.update(private);
            }
        }
        h.finalize().into()
    }
}
