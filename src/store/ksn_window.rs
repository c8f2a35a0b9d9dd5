//! Where the open KSN window lives on disk: its summary (start, counters,
//! caps; JSON in `meta` under [`WINDOW_KEY`]) and the sketch registers
//! that are not zero (`ksn_register`). The store owns the tables and their
//! SQL; `collect::ksn` owns what the numbers mean and hands them over in
//! the group commit that acknowledges the events they count.

use rusqlite::{Connection, params};

use super::{StoreError, meta_get, meta_set};

/// The `meta` key of the window's summary.
pub const WINDOW_KEY: &str = "ksn_window";

/// The stored summary, as its owner wrote it, if any.
pub fn summary(connection: &Connection) -> Result<Option<String>, StoreError> {
    meta_get(connection, WINDOW_KEY)
}

/// Replaces the stored summary.
pub fn set_summary(connection: &Connection, json: &str) -> Result<(), StoreError> {
    meta_set(connection, WINDOW_KEY, json)
}

/// Calls `each(sketch, index, value)` for every stored register.
pub fn registers(
    connection: &Connection,
    mut each: impl FnMut(i64, i64, u8),
) -> Result<(), StoreError> {
    let mut query = connection.prepare_cached("SELECT sketch, idx, value FROM ksn_register")?;
    let mut rows = query.query([])?;
    while let Some(row) = rows.next()? {
        each(row.get(0)?, row.get(1)?, row.get(2)?);
    }
    Ok(())
}

/// Forgets every stored register (the window was reset).
pub fn clear_registers(connection: &Connection) -> Result<(), StoreError> {
    connection.execute("DELETE FROM ksn_register", [])?;
    Ok(())
}

/// A writer of registers that moved, in the caller's transaction.
pub struct RegisterWriter<'c>(rusqlite::CachedStatement<'c>);

impl<'c> RegisterWriter<'c> {
    pub fn new(connection: &'c Connection) -> Result<Self, StoreError> {
        Ok(Self(connection.prepare_cached(
            "INSERT INTO ksn_register (sketch, idx, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (sketch, idx) DO UPDATE SET value = excluded.value",
        )?))
    }

    /// Stores register `index` of sketch `sketch` as `value`.
    pub fn set(&mut self, sketch: usize, index: usize, value: u8) -> Result<(), StoreError> {
        self.0
            .execute(params![sketch as i64, index as i64, value])?;
        Ok(())
    }
}
