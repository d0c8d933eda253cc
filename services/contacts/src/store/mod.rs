//! sqlx queries on the `contacts` schema, one module per resource. Every
//! function runs inside a tenant transaction (see
//! `rapport_core::db::begin_tenant`), so row-level security confines it to
//! that tenant's rows; a function that changes data writes that change's
//! feed events in the same transaction.

pub mod contact;
pub mod history;
pub mod privacy;
pub mod timeline;
