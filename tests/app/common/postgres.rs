//! Throwaway PostgreSQL databases on the local server.

use super::Proxy;

/// The local PostgreSQL server's maintenance database.
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh PostgreSQL database, dropped by [`TestDatabase::drop_now`].
pub struct TestDatabase {
    pub name: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create(prefix: &str) -> TestDatabase {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hw_{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin_pool().await;
        // A name we generated ourselves (letters, digits, '_'): safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("CREATE DATABASE");
        admin.close().await;
        TestDatabase {
            name,
            dropped: false,
        }
    }

    /// Its URL on the server itself.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// Its URL through `proxy`.
    pub fn url_via(&self, proxy: &Proxy) -> String {
        format!("postgres://postgres@{}/{}", proxy.addr, self.name)
    }

    /// Drops it, closing whatever is still connected.
    pub async fn drop_now(mut self) {
        drop_database(&self.name).await;
        self.dropped = true;
    }
}

/// A test that fails (or forgets [`TestDatabase::drop_now`]) still drops its
/// database: from a thread of its own, since this may run inside the test's
/// runtime, which cannot be blocked on.
impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let name = std::mem::take(&mut self.name);
        let dropping =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(drop_database(&name)),
                    Err(err) => eprintln!("test database {name} left behind: {err}"),
                }
            });
        let _ = dropping.join();
    }
}

async fn drop_database(name: &str) {
    let admin = admin_pool().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
    admin.close().await;
}

async fn admin_pool() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(POSTGRES_ADMIN_URL)
        .await
        .expect("local PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)")
}
