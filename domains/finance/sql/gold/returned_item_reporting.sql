/*
TPC-H Q10 Returned Item Reporting, validation parameter DATE = 1993-10-01 (orders of one quarter),
from the sales.order_lines_wide and customers.customer_profile ports.
*/
WITH returned AS (
    SELECT
        o_custkey,
        SUM(revenue) AS revenue
    FROM sales.order_lines_wide
    WHERE o_orderdate >= DATE '1993-10-01'
      AND o_orderdate < DATE '1993-10-01' + INTERVAL '3' MONTH
      AND l_returnflag = 'R'
    GROUP BY
        o_custkey
)
SELECT
    c.c_custkey,
    c.c_name,
    r.revenue,
    c.c_acctbal,
    c.n_name,
    c.c_address,
    c.c_phone,
    c.c_comment
FROM returned AS r
JOIN customers.customer_profile AS c
    ON c.c_custkey = r.o_custkey
ORDER BY
    r.revenue DESC
LIMIT 20
