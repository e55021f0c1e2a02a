// The nine operations the bench times. Each run(prisma, i) is one operation; i is unique within a
// case, so writes never collide on a key and the 8 callers touch different rows.

export const CASE_NAMES = ["findFirst", "findMany", "create", "update", "transaction", "createMany", "updateMany", "deleteMany", "executeRaw"] as const;
export type CaseName = (typeof CASE_NAMES)[number];

export const USERS = 2000;
/** Ledger rows keyed `d-<n>` for deleteMany to delete one by one: the bench inserts them ahead (topUp). */
let deletable = 0;

let seq = 0;
let deleted = 0;

export const CASES: Record<CaseName, (p: any, i: number) => Promise<unknown>> = {
  // findFirst, not findUnique: Prisma batches findUnique calls made in the same tick into one query.
  findFirst: (p, i) => p.user.findFirst({ where: { id: 1 + (i % USERS) } }),
  findMany: (p, i) => p.user.findMany({ where: { id: { gt: i % (USERS - 10) } }, take: 10, orderBy: { id: "asc" } }),
  create: (p) => p.ledger.create({ data: { key: `bench-${seq++}`, amount: 1 } }),
  update: (p, i) => p.user.update({ where: { id: 1 + (i % USERS) }, data: { balance: { increment: 1 } } }),
  // A small interactive transaction: a read and a write.
  transaction: (p, i) =>
    p.$transaction(async (tx: any) => {
      const u = await tx.user.findUnique({ where: { id: 1 + (i % USERS) } });
      await tx.ledger.create({ data: { key: `bench-tx-${seq++}`, amount: u ? 1 : 0 } });
    }),
  createMany: (p) =>
    p.ledger.createMany({
      data: [
        { key: `bench-m-${seq++}`, amount: 1 },
        { key: `bench-m-${seq++}`, amount: 1 },
      ],
    }),
  updateMany: (p, i) => {
    const a = 1 + ((2 * i) % USERS);
    return p.user.updateMany({ where: { id: { in: [a, a + 1] } }, data: { balance: { increment: 1 } } });
  },
  // One existing row per operation (topUp inserts them before each run of this case).
  deleteMany: (p) => p.ledger.deleteMany({ where: { key: `d-${++deleted}` } }),
  executeRaw: (p, i) => p.$executeRaw`UPDATE User SET balance = balance + 1 WHERE id = ${1 + (i % USERS)}`,
};

/** Inserts rows for deleteMany so that the next `n` operations each find one. */
export async function topUp(admin: (sql: string) => Promise<unknown>, database: string, n: number) {
  const want = deleted + n;
  if (deletable >= want) return;
  const to = Math.max(want + 1000, deletable + 10_000);
  await admin(`INSERT INTO \`${database}\`.Ledger (\`key\`, amount) SELECT CONCAT('d-', seq), 0 FROM seq_${deletable + 1}_to_${to}`);
  deletable = to;
}
