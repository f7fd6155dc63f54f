//! Typed, memory-mapped access to an object's global variables after load: `.data`, `.bss` and
//! custom `.data.*` sections are `BPF_F_MMAPABLE` array maps (as libbpf creates them), so a
//! [`GlobalVar`] reads and writes the variable in the map's memory directly: the program's
//! stores are visible without a syscall, and the program sees userspace's. Read-only sections
//! (`.rodata*`, `.kconfig`) are frozen at load and cannot be mapped writable: read those with
//! [`LoadedObject::global`].

use super::load::LoadedObject;
use super::maps::MapOrigin;
use super::ObjectError;
use crate::maps::{MapFlags, MappedMap};
use bytemuck::Pod;
use std::marker::PhantomData;

/// One global variable of type `T` in its section's memory mapping
/// ([`LoadedObject::global_mmap`]); keeps the mapping alive.
pub struct GlobalVar<T> {
    mem: MappedMap,
    offset: usize,
    name: String,
    _type: PhantomData<T>,
}

impl<T: Pod> GlobalVar<T> {
    /// The variable's current value, read from the map's memory.
    pub fn get(&self) -> T {
        let size = std::mem::size_of::<T>();
        bytemuck::pod_read_unaligned(&self.mem.as_bytes()[self.offset..self.offset + size])
    }

    /// Store `value` into the map's memory, where the program reads it.
    pub fn set(&mut self, value: T) {
        let size = std::mem::size_of::<T>();
        self.mem.as_bytes_mut()[self.offset..self.offset + size].copy_from_slice(bytemuck::bytes_of(&value));
    }

    /// The variable's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T> std::fmt::Debug for GlobalVar<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalVar").field("name", &self.name).field("offset", &self.offset).finish()
    }
}

impl LoadedObject {
    /// Global variable `name` as a `T` in its section's memory mapping: `T` must be exactly the
    /// variable's size, and the section writable (`.data`, `.bss`, `.data.*`, `.bss.*`).
    pub fn global_mmap<T: Pod>(&self, name: &str) -> Result<GlobalVar<T>, ObjectError> {
        let err = |reason: String| ObjectError::Global { name: name.to_string(), reason };
        let (def, map, offset, size) = self.global_slot(name)?;
        if std::mem::size_of::<T>() != size {
            return Err(err(format!("is {size} bytes, the type asked for is {}", std::mem::size_of::<T>())));
        }
        if matches!(def.origin, MapOrigin::Data { readonly: true }) {
            return Err(err(format!(
                "is in read-only section '{}', frozen at load: read it with LoadedObject::global",
                def.name
            )));
        }
        if !map.flags().contains(MapFlags::MMAPABLE) {
            return Err(err(format!("section '{}' holds only static variables, so it is not mmapable", def.name)));
        }
        let mem = map.mmap().map_err(|e| err(format!("mapping section '{}': {e}", def.name)))?;
        if offset + size > mem.as_bytes().len() {
            return Err(err(format!("offset {offset} + {size} is outside section '{}''s mapping", def.name)));
        }
        Ok(GlobalVar { mem, offset, name: name.to_string(), _type: PhantomData })
    }
}
