-- Every coupon handed out, exactly once. The keys let the database enforce what Redis
-- decided: one coupon per user per campaign, and each seq given to one user only.
CREATE TABLE IF NOT EXISTS coupon_issuances (
    campaign     text        NOT NULL,
    user_id      text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq > 0),
    coupon_code  text        NOT NULL,
    issued_at    timestamptz NOT NULL,
    persisted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (campaign, user_id),
    UNIQUE (campaign, seq)
);
