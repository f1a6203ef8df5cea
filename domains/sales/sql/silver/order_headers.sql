/* sales.silver.order_headers: landed orders, typed to the contract, code columns trimmed, rows without a key dropped. */
SELECT
    CAST(o_orderkey AS BIGINT) AS o_orderkey,
    CAST(o_custkey AS BIGINT) AS o_custkey,
    TRIM(o_orderstatus) AS o_orderstatus,
    CAST(o_totalprice AS DECIMAL(15, 2)) AS o_totalprice,
    CAST(o_orderdate AS DATE) AS o_orderdate,
    TRIM(o_orderpriority) AS o_orderpriority,
    TRIM(o_clerk) AS o_clerk,
    CAST(o_shippriority AS BIGINT) AS o_shippriority,
    o_comment
FROM bronze.orders
WHERE o_orderkey IS NOT NULL
