/* sales.silver.order_lines: landed line items, code columns trimmed (types and key checks come from bronze);
   o_orderdate, its order's date, is the partition column. */
SELECT
    l_orderkey,
    l_partkey,
    l_suppkey,
    l_linenumber,
    l_quantity,
    l_extendedprice,
    l_discount,
    l_tax,
    TRIM(l_returnflag) AS l_returnflag,
    TRIM(l_linestatus) AS l_linestatus,
    l_shipdate,
    l_commitdate,
    l_receiptdate,
    TRIM(l_shipinstruct) AS l_shipinstruct,
    TRIM(l_shipmode) AS l_shipmode,
    l_comment,
    o_orderdate
FROM bronze.lineitem
