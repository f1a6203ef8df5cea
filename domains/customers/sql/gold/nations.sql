/* customers.gold.nations: every nation with the name of its region (public port customers.nations). */
SELECT
    n.n_nationkey,
    n.n_name,
    n.n_regionkey,
    r.r_name,
    n.n_comment
FROM bronze.nation AS n
LEFT JOIN bronze.region AS r
    ON r.r_regionkey = n.n_regionkey
