/* supply.gold.supplier_profile: every supplier with its nation and region names, read from the customers.nations port. */
SELECT
    s.s_suppkey,
    s.s_name,
    s.s_address,
    s.s_nationkey,
    s.s_phone,
    s.s_acctbal,
    s.s_comment,
    n.n_name,
    n.r_name
FROM silver.suppliers AS s
LEFT JOIN customers.nations AS n
    ON n.n_nationkey = s.s_nationkey
