using VirtioSharp.Queues;
using System.Runtime.InteropServices;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The shared inflight region of one split queue (vhost-user.rst "Inflight I/O tracking"): it survives a back-end
/// crash because the front-end keeps the memfd and hands it back on reconnect. Layout per queue: features u64,
/// version u16, desc_num u16, last_batch_head u16, used_idx u16, then desc_num × {inflight u8, pad[5], next u16,
/// counter u64}. Every value read back after a crash is bounded before use.
/// </summary>
internal sealed unsafe class InflightQueue : IInflightLog
{
    public const int HeaderSize = 16;
    public const int DescStateSize = 16;
    private readonly byte* _base;
    private readonly ushort _size;
    private ulong _counter;

    public InflightQueue(byte* @base, ushort size)
    {
        _base = @base;
        _size = size;
    }

    public static ulong QueueBytes(ushort queueSize) => ((ulong)(HeaderSize + DescStateSize * queueSize) + 63) & ~63UL;

    private ref ushort DescNum => ref *(ushort*)(_base + 10);
    private ref ushort LastBatchHead => ref *(ushort*)(_base + 12);
    private ref ushort UsedIdx => ref *(ushort*)(_base + 14);
    private byte* Desc(int i) => _base + HeaderSize + DescStateSize * i;

    /// <summary>Fresh region (first connection): zero it and stamp the version and size.</summary>
    public void Initialize(ushort usedIdx)
    {
        new Span<byte>(_base, (int)QueueBytes(_size)).Clear();
        *(ushort*)(_base + 8) = 1;
        DescNum = _size;
        UsedIdx = usedIdx;
    }

    public bool IsInitialized => *(ushort*)(_base + 8) == 1 && DescNum == _size;

    /// <summary>
    /// After a reconnect: settle the batch that was half done when the back-end died, and return the heads still in
    /// flight in the order they were popped.
    /// </summary>
    public List<ushort> Recover(ushort ringUsedIdx)
    {
        if (UsedIdx != ringUsedIdx)
        {
            // The used ring already holds the last batch: its head is done even though we never cleared it.
            ushort h = LastBatchHead;
            if (h < _size) Desc(h)[0] = 0;
            UsedIdx = ringUsedIdx;
        }
        var heads = new List<(ulong Counter, ushort Head)>();
        ulong max = 0;
        for (int i = 0; i < _size; i++)
        {
            if (Desc(i)[0] != 1) { Desc(i)[0] = 0; continue; }
            ulong c = *(ulong*)(Desc(i) + 8);
            heads.Add((c, (ushort)i));
            max = Math.Max(max, c);
        }
        _counter = max + 1;
        return heads.OrderBy(h => h.Counter).Select(h => h.Head).ToList();
    }

    public void Popped(ushort head)
    {
        *(ulong*)(Desc(head) + 8) = ++_counter;
        Volatile.Write(ref Desc(head)[0], 1);
    }

    public void Using(ushort head) => Volatile.Write(ref LastBatchHead, head);

    public void Used(ushort head, ushort usedIdx)
    {
        Volatile.Write(ref Desc(head)[0], 0);
        Volatile.Write(ref UsedIdx, usedIdx);
    }
}
