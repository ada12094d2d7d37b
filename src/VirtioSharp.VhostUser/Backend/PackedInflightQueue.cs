using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The shared inflight region of one packed queue (vhost-user.rst "Inflight I/O tracking", packed layout). Header:
/// features u64, version u16, desc_num u16, free_head u16, old_free_head u16, used_idx u16, old_used_idx u16,
/// used_wrap_counter u8, old_used_wrap_counter u8, padding to 32. Then desc_num × 32-byte entries: inflight u8, pad u8,
/// next u16, last u16, num u16, counter u64, id u16, flags u16, len u32, addr u64.
/// A packed ring overwrites available descriptors with used ones, so each chain's ring descriptors are copied into
/// entries taken from a free list. The "old_" fields are the state before the batch in progress: after a crash the
/// ring shows whether that batch's used descriptor was published, and the region is committed or rolled back.
/// The front-end holds this memory and a crashed back-end wrote it, so it is written here but never read back on the
/// hot path: the free list lives in a private mirror; <see cref="Recover"/> validates everything it reads.
/// </summary>
internal sealed unsafe class PackedInflightQueue : IPackedInflightLog
{
    public const int HeaderSize = 32;
    public const int DescStateSize = 32;
    private readonly byte* _base;
    private readonly ushort _size;
    private readonly ushort[] _next;       // private free list (the shared copy is for the next incarnation)
    private readonly ushort[] _last;       // per head entry: its chain's last entry
    private readonly ushort[] _batch;      // head entries of the used batch in progress
    private int _batchCount;
    private ushort _freeHead;
    private ushort _usedIdx, _oldUsedIdx;  // private copies of the used state last written
    private byte _usedWrap, _oldUsedWrap;
    private ulong _counter;

    public PackedInflightQueue(byte* @base, ushort size)
    {
        _base = @base;
        _size = size;
        _next = new ushort[size];
        _last = new ushort[size];
        _batch = new ushort[size];
    }

    public static ulong QueueBytes(ushort queueSize) => ((ulong)(HeaderSize + DescStateSize * queueSize) + 63) & ~63UL;

    private ref ushort Version => ref *(ushort*)(_base + 8);
    private ref ushort DescNum => ref *(ushort*)(_base + 10);
    private ref ushort FreeHead => ref *(ushort*)(_base + 12);
    private ref ushort OldFreeHead => ref *(ushort*)(_base + 14);
    // used_idx, old_used_idx, used_wrap_counter, old_used_wrap_counter (bytes 16-21): written and read as one aligned
    // 8-byte word, so a kill can never leave an index paired with the other state's wrap counter.
    private ref ulong UsedState => ref *(ulong*)(_base + 16);

    private void WriteUsedState(ushort used, ushort oldUsed, byte wrap, byte oldWrap)
    {
        _usedIdx = used; _oldUsedIdx = oldUsed; _usedWrap = wrap; _oldUsedWrap = oldWrap;
        Volatile.Write(ref UsedState, used | (ulong)oldUsed << 16 | (ulong)wrap << 32 | (ulong)oldWrap << 40);
    }
    private byte* Entry(int i) => _base + HeaderSize + DescStateSize * i;
    private static ref byte InflightOf(byte* e) => ref *e;
    private static ref ushort NextOf(byte* e) => ref *(ushort*)(e + 2);
    private static ref ushort LastOf(byte* e) => ref *(ushort*)(e + 4);
    private static ref ushort NumOf(byte* e) => ref *(ushort*)(e + 6);
    private static ref ulong CounterOf(byte* e) => ref *(ulong*)(e + 8);

    public bool IsInitialized => Version == 1 && DescNum == _size;

    /// <summary>Fresh region (first start, or after a device reset): every entry free, positions from the front-end.</summary>
    public void Initialize(int nextUsed, bool usedWrap)
    {
        new Span<byte>(_base, (int)QueueBytes(_size)).Clear();
        DescNum = _size;
        var none = new bool[_size];
        RebuildFreeList(none);
        byte w = (byte)(usedWrap ? 1 : 0);
        WriteUsedState((ushort)nextUsed, (ushort)nextUsed, w, w);
        _counter = 0;
        _batchCount = 0;
        Volatile.Write(ref Version, 1);
    }

    /// <summary>
    /// After a reconnect: commits or rolls back the batch that was half done, then returns the used position and the
    /// chains still in flight, oldest first. <paramref name="ringFlagsAt"/> reads a descriptor's flags from the ring
    /// (null if unreadable). Throws <see cref="InvalidDataException"/> if the region is inconsistent.
    /// </summary>
    public (int NextUsed, bool UsedWrap, List<RecordedChain> Chains) Recover(Func<int, ushort?> ringFlagsAt)
    {
        ushort freeHead = FreeHead, oldFreeHead = OldFreeHead;
        ulong us = Volatile.Read(ref UsedState);
        ushort used = (ushort)us, oldUsed = (ushort)(us >> 16);
        byte wrap = (byte)(us >> 32), oldWrap = (byte)(us >> 40);
        // free_head == desc_num is the empty list: every entry belongs to a chain in flight.
        if (used >= _size || oldUsed >= _size || freeHead > _size || oldFreeHead > _size || wrap > 1 || oldWrap > 1)
            throw new InvalidDataException($"packed inflight header out of range (used {used}/{oldUsed}, free {freeHead}/{oldFreeHead}, wrap {wrap}/{oldWrap}, ring {_size})");
        if (used != oldUsed || wrap != oldWrap)
        {
            // The batch in progress wrote its used descriptor at old_used_idx last. If that slot no longer reads
            // "available" under the old wrap counter, the driver saw it: commit; otherwise roll back.
            ushort? flags = ringFlagsAt(oldUsed);
            if (flags is null) throw new InvalidDataException($"cannot read ring descriptor {oldUsed} to settle the last used batch");
            bool published = !PackedRing.IsAvail(flags.Value, oldWrap == 1);
            if (published) { oldUsed = used; oldWrap = wrap; oldFreeHead = freeHead; }
        }
        // Heads are the entries marked in flight that are not on the free list; walk the free list to tell.
        var member = new bool[_size];
        var free = new bool[_size];
        // The list ends at desc_num; a link past it, or back into the list, ends it too.
        for (int at = oldFreeHead; at < _size && !free[at]; at = NextOf(Entry(at))) free[at] = true;
        var chains = new List<RecordedChain>();
        int slots = 0;
        for (int h = 0; h < _size; h++)
        {
            byte* e = Entry(h);
            if (InflightOf(e) != 1 || free[h]) continue;
            int num = NumOf(e);
            ushort last = LastOf(e);
            if (num < 1 || num > _size || last >= _size || (slots += num) > _size)
                throw new InvalidDataException($"packed inflight entry {h}: chain of {num} descriptors ending at {last} does not fit the {_size}-entry ring");
            var descs = new PackedDesc[num];
            int i = h;
            for (int k = 0; ; k++)
            {
                if (member[i] || free[i]) throw new InvalidDataException($"packed inflight entry {h}: its chain reaches entry {i} twice or runs into the free list");
                member[i] = true;
                byte* d = Entry(i);
                descs[k] = new PackedDesc(*(ulong*)(d + 24), *(uint*)(d + 20), *(ushort*)(d + 16), *(ushort*)(d + 18));
                if (k == num - 1) break;
                int next = NextOf(d);
                if (next >= _size) throw new InvalidDataException($"packed inflight entry {h}: link {next} past the {_size} entries");
                _next[i] = (ushort)next;   // the private links inside the chain, for Using when it completes
                i = next;
            }
            if (i != last) throw new InvalidDataException($"packed inflight entry {h}: chain ends at {i}, but its last is {last}");
            _last[h] = last;
            chains.Add(new RecordedChain((ushort)h, CounterOf(e), descs));
        }
        chains.Sort((a, b) => a.Counter.CompareTo(b.Counter));
        _counter = chains.Count == 0 ? 0 : chains[^1].Counter + 1;
        // Every entry not in a chain is free again (this also drops a chain whose pop was cut short); the shared
        // list is rewritten from the private one so that garbage in it cannot survive another restart.
        RebuildFreeList(member);
        WriteUsedState(oldUsed, oldUsed, oldWrap, oldWrap);
        _batchCount = 0;
        return (oldUsed, oldWrap == 1, chains);
    }

    private void RebuildFreeList(bool[] taken)
    {
        // Clear every free entry's mark before relinking: a kill half way through then still leaves exactly the
        // chains' heads marked, whatever state the links are in.
        for (int i = 0; i < _size; i++)
            if (!taken[i]) Volatile.Write(ref InflightOf(Entry(i)), 0);
        int prev = -1;
        ushort head = _size;   // _size marks the end of the list
        for (int i = 0; i < _size; i++)
        {
            if (taken[i]) continue;
            if (prev < 0) head = (ushort)i;
            else { _next[prev] = (ushort)i; NextOf(Entry(prev)) = (ushort)i; }
            prev = i;
        }
        if (prev >= 0) { _next[prev] = _size; NextOf(Entry(prev)) = _size; }
        _freeHead = head;
        FreeHead = OldFreeHead = head;
    }

    public ushort Popped(DescriptorChain chain)
    {
        int n = chain.RingDescriptors;
        ushort head = _freeHead;
        int at = head, last = head;
        // Copies first; the head is marked in flight only once they are complete, and old_free_head moves last: a
        // crash in between leaves the head on the free list, so recovery drops the half-recorded chain.
        for (int k = 0; k < n; k++)
        {
            if (at >= _size) throw new InvalidOperationException($"packed inflight log has no free entry for {chain} (more ring slots in flight than entries)");
            var d = chain.RingDescriptor(k);
            byte* e = Entry(at);
            *(ulong*)(e + 24) = d.Addr;
            *(uint*)(e + 20) = d.Len;
            *(ushort*)(e + 16) = d.Id;
            *(ushort*)(e + 18) = d.Flags;
            last = at;
            at = _next[at];
        }
        byte* h = Entry(head);
        LastOf(h) = (ushort)last;
        NumOf(h) = (ushort)n;
        CounterOf(h) = _counter++;
        _last[head] = (ushort)last;
        Volatile.Write(ref InflightOf(h), 1);
        _freeHead = (ushort)at;
        FreeHead = (ushort)at;
        Volatile.Write(ref OldFreeHead, (ushort)at);
        return head;
    }

    public void Using(ushort entry)
    {
        // The chain's entries go back to the front of the free list.
        ushort last = _last[entry];
        _next[last] = _freeHead;
        NextOf(Entry(last)) = _freeHead;
        _freeHead = entry;
        FreeHead = entry;
        _batch[_batchCount++] = entry;
    }

    public void Publishing(int nextUsed, bool usedWrap) =>
        WriteUsedState((ushort)nextUsed, _oldUsedIdx, (byte)(usedWrap ? 1 : 0), _oldUsedWrap);

    public void Committed()
    {
        for (int i = 0; i < _batchCount; i++) Volatile.Write(ref InflightOf(Entry(_batch[i])), 0);
        _batchCount = 0;
        Volatile.Write(ref OldFreeHead, _freeHead);
        WriteUsedState(_usedIdx, _usedIdx, _usedWrap, _usedWrap);
    }
}
