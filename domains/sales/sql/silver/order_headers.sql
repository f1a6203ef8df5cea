/* sales.silver.order_headers: landed orders, code columns trimmed (types and key checks come from bronze). */
SELECT
    o_orderkey,
    o_custkey,
    TRIM(o_orderstatus) AS o_orderstatus,
    o_totalprice,
    o_orderdate,
    TRIM(o_orderpriority) AS o_orderpriority,
    TRIM(o_clerk) AS o_clerk,
    o_shippriority,
    o_comment
FROM bronze.orders
