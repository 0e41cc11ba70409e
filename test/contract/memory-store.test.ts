/** MemoryStore against the shared SessionStore + RetainStore contract. */
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import { runSessionStoreContract } from './session-store.contract.js';

// A "reopen" of the memory store is a second broker instance over the same object.
runSessionStoreContract('MemoryStore', async () => {
  const store = new MemoryStore();
  return {
    store,
    reopen: async () => {
      store.close();
      return store;
    },
    cleanup: async () => {
      store.close();
    },
  };
});
