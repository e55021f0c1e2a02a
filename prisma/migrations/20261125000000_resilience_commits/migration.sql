-- CreateTable
CREATE TABLE `_resilience_commits` (
    `conn` VARCHAR(100) NOT NULL,
    `token` CHAR(32) NOT NULL,
    `at` DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),

    PRIMARY KEY (`conn`)
) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
