/* sales.silver.order_lines: landed line items, typed to the contract, code columns trimmed, rows without a key dropped. */
SELECT
    CAST(l_orderkey AS BIGINT) AS l_orderkey,
    CAST(l_partkey AS BIGINT) AS l_partkey,
    CAST(l_suppkey AS BIGINT) AS l_suppkey,
    CAST(l_linenumber AS BIGINT) AS l_linenumber,
    CAST(l_quantity AS DECIMAL(15, 2)) AS l_quantity,
    CAST(l_extendedprice AS DECIMAL(15, 2)) AS l_extendedprice,
    CAST(l_discount AS DECIMAL(15, 2)) AS l_discount,
    CAST(l_tax AS DECIMAL(15, 2)) AS l_tax,
    TRIM(l_returnflag) AS l_returnflag,
    TRIM(l_linestatus) AS l_linestatus,
    CAST(l_shipdate AS DATE) AS l_shipdate,
    CAST(l_commitdate AS DATE) AS l_commitdate,
    CAST(l_receiptdate AS DATE) AS l_receiptdate,
    TRIM(l_shipinstruct) AS l_shipinstruct,
    TRIM(l_shipmode) AS l_shipmode,
    l_comment
FROM bronze.lineitem
WHERE l_orderkey IS NOT NULL
  AND l_linenumber IS NOT NULL
