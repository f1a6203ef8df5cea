/* customers.gold.customer_profile: every customer with the name of its nation and region (public port). */
SELECT
    c.c_custkey,
    c.c_name,
    c.c_address,
    c.c_nationkey,
    c.c_phone,
    c.c_acctbal,
    c.c_mktsegment,
    c.c_comment,
    n.n_name,
    n.r_name
FROM {{ source('customers_silver', 'customers') }} AS c
LEFT JOIN {{ source('customers_gold', 'nations') }} AS n
    ON n.n_nationkey = c.c_nationkey
