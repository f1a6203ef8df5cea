/* customers.silver.customers: landed customers, typed to the contract, code columns trimmed, rows without a key dropped. */
SELECT
    CAST(c_custkey AS BIGINT) AS c_custkey,
    TRIM(c_name) AS c_name,
    c_address,
    CAST(c_nationkey AS BIGINT) AS c_nationkey,
    TRIM(c_phone) AS c_phone,
    CAST(c_acctbal AS DECIMAL(15, 2)) AS c_acctbal,
    TRIM(c_mktsegment) AS c_mktsegment,
    c_comment
FROM bronze.customer
WHERE c_custkey IS NOT NULL
