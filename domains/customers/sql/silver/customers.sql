/* customers.silver.customers: landed customers, code columns trimmed (types and key checks come from bronze). */
SELECT
    c_custkey,
    TRIM(c_name) AS c_name,
    c_address,
    c_nationkey,
    TRIM(c_phone) AS c_phone,
    c_acctbal,
    TRIM(c_mktsegment) AS c_mktsegment,
    c_comment
FROM bronze.customer
