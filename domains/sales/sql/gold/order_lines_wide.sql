/*
sales.gold.order_lines_wide: one row per order line (every line kept: LEFT JOINs from order_lines) with its order,
the customer from customers.customer_profile, the part from supply.part_catalog, the supplier from
supply.supplier_profile, and the exact discounted revenue. Partitioned by month of o_orderdate: a partition's step
reads the same month of order_lines and order_headers, and every customer, part and supplier.
*/
SELECT
    l.l_orderkey,
    l.l_partkey,
    l.l_suppkey,
    l.l_linenumber,
    l.l_quantity,
    l.l_extendedprice,
    l.l_discount,
    l.l_tax,
    l.l_returnflag,
    l.l_linestatus,
    l.l_shipdate,
    l.l_commitdate,
    l.l_receiptdate,
    l.l_shipinstruct,
    l.l_shipmode,
    l.l_comment,
    o.o_custkey,
    o.o_orderstatus,
    o.o_totalprice,
    l.o_orderdate,
    o.o_orderpriority,
    o.o_clerk,
    o.o_shippriority,
    o.o_comment,
    c.c_name,
    c.c_mktsegment,
    c.c_nationkey,
    c.n_name AS customer_nation,
    c.r_name AS customer_region,
    p.p_name,
    p.p_mfgr,
    p.p_brand,
    p.p_type,
    p.p_size,
    p.p_container,
    p.p_retailprice,
    s.s_name,
    s.s_nationkey,
    s.n_name AS supplier_nation,
    s.r_name AS supplier_region,
    l.l_extendedprice * (1 - l.l_discount) AS revenue
FROM silver.order_lines AS l
LEFT JOIN silver.order_headers AS o
    ON o.o_orderkey = l.l_orderkey
LEFT JOIN customers.customer_profile AS c
    ON c.c_custkey = o.o_custkey
LEFT JOIN supply.part_catalog AS p
    ON p.p_partkey = l.l_partkey
LEFT JOIN supply.supplier_profile AS s
    ON s.s_suppkey = l.l_suppkey
