//! `Map` behaviour through the syscall seam (`sys::fake`), without root: a fake kernel keeps a
//! hash map in memory and answers bpf(2) as the kernel does, so these tests pin what bpfkit does
//! around the syscall — sizes, checks before the call, ENOENT as absence, key iteration, errors
//! that name the map — on any machine. The kernel's own behaviour is tested against the kernel.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use super::{Map, MapError, MapSpec, MapType, UpdateFlags};
use crate::sys::fake::{fake_fd, with_fake_bpf, Call};
use crate::sys::{Cmd, MapCreateAttr, MapElemAttr};

/// What the fake kernel holds and saw.
#[derive(Default)]
struct FakeKernel {
    key_size: usize,
    value_size: usize,
    max_entries: usize,
    elems: BTreeMap<Vec<u8>, Vec<u8>>,
    calls: Vec<Cmd>,
}

fn errno(e: i32) -> io::Result<i64> {
    Err(io::Error::from_raw_os_error(e))
}

impl FakeKernel {
    fn answer(&mut self, call: &mut Call<'_>) -> io::Result<i64> {
        self.calls.push(call.cmd);
        match call.cmd {
            Cmd::MapCreate => {
                let a: MapCreateAttr = call.attr();
                (self.key_size, self.value_size, self.max_entries) = (a.key_size as usize, a.value_size as usize, a.max_entries as usize);
                Ok(fake_fd())
            }
            Cmd::MapUpdateElem => {
                let a: MapElemAttr = call.attr();
                let (key, value) = (call.read_user(a.key, self.key_size), call.read_user(a.value, self.value_size));
                if !self.elems.contains_key(&key) && self.elems.len() == self.max_entries {
                    return errno(libc::E2BIG);
                }
                match (a.flags, self.elems.contains_key(&key)) {
                    (1, true) => return errno(libc::EEXIST),  // BPF_NOEXIST
                    (2, false) => return errno(libc::ENOENT), // BPF_EXIST
                    _ => {}
                }
                self.elems.insert(key, value);
                Ok(0)
            }
            Cmd::MapLookupElem => {
                let a: MapElemAttr = call.attr();
                let key = call.read_user(a.key, self.key_size);
                match self.elems.get(&key).cloned() {
                    Some(v) => {
                        call.write_user(a.value, &v);
                        Ok(0)
                    }
                    None => errno(libc::ENOENT),
                }
            }
            Cmd::MapDeleteElem => {
                let a: MapElemAttr = call.attr();
                let key = call.read_user(a.key, self.key_size);
                if self.elems.remove(&key).is_some() { Ok(0) } else { errno(libc::ENOENT) }
            }
            Cmd::MapGetNextKey => {
                let a: MapElemAttr = call.attr();
                let next = if a.key == 0 {
                    self.elems.keys().next().cloned()
                } else {
                    let key = call.read_user(a.key, self.key_size);
                    self.elems.range(key..).map(|(k, _)| k).find(|k| **k != call.read_user(a.key, self.key_size)).cloned()
                };
                match next {
                    Some(k) => {
                        call.write_user(a.value, &k);
                        Ok(0)
                    }
                    None => errno(libc::ENOENT),
                }
            }
            _ => errno(libc::ENOSYS),
        }
    }
}

/// Run `body` against a fresh fake kernel; returns the body's result and the fake's state.
fn with_fake<R>(body: impl FnOnce() -> R) -> (R, Rc<RefCell<FakeKernel>>) {
    let kernel = Rc::new(RefCell::new(FakeKernel::default()));
    let k = kernel.clone();
    let r = with_fake_bpf(move |call| k.borrow_mut().answer(call), body);
    (r, kernel)
}

#[test]
fn elements_round_trip_and_absence_is_none() {
    let (_, kernel) = with_fake(|| {
        let m = Map::create(&MapSpec::new("counts", MapType::Hash, 4, 8, 2)).unwrap();
        m.update(&1u32.to_le_bytes(), &10u64.to_le_bytes(), UpdateFlags::Any).unwrap();
        m.update(&2u32.to_le_bytes(), &20u64.to_le_bytes(), UpdateFlags::NoExist).unwrap();
        assert_eq!(m.lookup(&1u32.to_le_bytes()).unwrap(), Some(10u64.to_le_bytes().to_vec()));
        assert_eq!(m.lookup(&3u32.to_le_bytes()).unwrap(), None, "ENOENT is absence, not an error");
        // The kernel's refusals come back naming the map and the errno.
        let full = m.update(&3u32.to_le_bytes(), &30u64.to_le_bytes(), UpdateFlags::Any).unwrap_err();
        assert_eq!(full.errno(), Some(libc::E2BIG));
        assert!(full.to_string().contains("\"counts\""), "{full}");
        let exists = m.update(&1u32.to_le_bytes(), &0u64.to_le_bytes(), UpdateFlags::NoExist).unwrap_err();
        assert_eq!(exists.errno(), Some(libc::EEXIST), "{exists}");
        // Keys in the kernel's order; deleting one the walk already passed does not end it.
        let keys: Vec<Vec<u8>> = m.keys().collect::<Result<_, _>>().unwrap();
        assert_eq!(keys, vec![1u32.to_le_bytes().to_vec(), 2u32.to_le_bytes().to_vec()]);
        assert!(m.delete(&1u32.to_le_bytes()).unwrap());
        assert!(!m.delete(&1u32.to_le_bytes()).unwrap(), "deleting an absent key is false");
    });
    assert_eq!(kernel.borrow().elems.len(), 1);
}

#[test]
fn wrong_sizes_are_refused_before_the_kernel_is_asked() {
    let (_, kernel) = with_fake(|| {
        let m = Map::create(&MapSpec::new("sizes", MapType::Hash, 4, 8, 4)).unwrap();
        let short_key = m.lookup(&[1, 2]).unwrap_err();
        assert!(matches!(&short_key, MapError::WrongSize { what: "key", got: 2, want: 4, .. }), "{short_key}");
        let long_value = m.update(&1u32.to_le_bytes(), &[0u8; 9], UpdateFlags::Any).unwrap_err();
        assert!(long_value.to_string().contains("value"), "{long_value}");
        let mut out = [0u8; 4];
        assert!(m.lookup_into(&1u32.to_le_bytes(), &mut out).is_err(), "a 4-byte buffer for an 8-byte value");
        assert_eq!(short_key.errno(), None, "refused by bpfkit, not by the kernel");
    });
    // Only the create reached the (fake) kernel: every refusal above happened in bpfkit.
    assert_eq!(kernel.borrow().calls, vec![Cmd::MapCreate]);
}
