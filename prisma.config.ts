import { defineConfig } from "prisma/config";

// The URL is only needed by commands that talk to a database (migrate, db push); `prisma generate`
// runs offline without one. The tests and the demo apply prisma/migrations themselves.
export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "mysql://root@127.0.0.1:3306/app" },
});
