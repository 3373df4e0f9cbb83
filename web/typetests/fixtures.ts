/** Values of the wrong type for misuse.ts. */
export const CollectionIdType = 42;
