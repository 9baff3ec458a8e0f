-- The keys compare as bytes, whatever the database's default collation. PostgreSQL orders
-- text by the database's locale (en_US.UTF-8 or an ICU locale are common defaults), and the
-- two unique indexes the writer fills compared in a language's order cost PostgreSQL ~20 %
-- more CPU per stored row than byte order (docs/benchmarks.md, "The keys' collation").
-- Nothing reads these columns in a language's order, and equality is unchanged: a
-- deterministic collation's equal strings are equal bytes. On a table that already holds
-- rows this rebuilds its two indexes once, under an exclusive lock (docs/upgrading.md).
ALTER TABLE coupon_issuances
    ALTER COLUMN campaign TYPE text COLLATE "C",
    ALTER COLUMN user_id TYPE text COLLATE "C";
