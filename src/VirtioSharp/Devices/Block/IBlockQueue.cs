using System.Runtime.InteropServices;

namespace VirtioSharp.Devices.Block;

/// <summary>
/// One virtqueue's channel to the storage: requests go in with <see cref="Submit"/>, start with <see cref="Kick"/>
/// and come back from <see cref="Reap"/>, in any order. Every member is called on the queue's owner thread only;
/// the storage may finish requests on threads of its own, but reports them only through <see cref="Reap"/>.
/// </summary>
/// <remarks>
/// No member may block on the storage except <see cref="WaitForCompletions"/>, which the device calls only to drain
/// a queue that is stopping (bounded by its timeout). A request's vectors must not be touched after its completion was
/// reaped. A queue that is disposed must first have no request in flight (the device drains it).
/// </remarks>
public interface IBlockQueue : IDisposable
{
    /// <summary>
    /// Readable (an eventfd, say) while completions wait to be reaped; the device polls it through
    /// <see cref="DeviceContext{TMem}.AddEventSource"/>. Null if every request has completed by the time
    /// <see cref="Kick"/> returns (synchronous storage): the device then reaps right after kicking.
    /// </summary>
    SafeHandle? CompletionEvent { get; }
    /// <summary>Most requests in flight at once; the device never submits more.</summary>
    int Depth { get; }
    /// <summary>Most vectors in one request (e.g. 1024, IOV_MAX); the device copies through a buffer of its own beyond that.</summary>
    int MaxVectors { get; }
    /// <summary>Queues <paramref name="request"/>; it may not start before <see cref="Kick"/>. Never blocks.</summary>
    void Submit(in BlockRequest request);
    /// <summary>Starts everything submitted since the last kick (one system call for a batch where the storage can).</summary>
    void Kick();
    /// <summary>
    /// True when <see cref="Reap"/> has completions now: requests the storage finished inside <see cref="Submit"/> or
    /// <see cref="Kick"/> (served inline). The <see cref="CompletionEvent"/> need not become readable for those: after
    /// every kick the device reaps while this is true. Storage that never finishes inline leaves it false.
    /// </summary>
    bool HasReadyCompletions => false;
    /// <summary>Moves finished requests into <paramref name="completions"/> and returns how many; never blocks.</summary>
    int Reap(Span<BlockCompletion> completions);
    /// <summary>Waits up to <paramref name="timeoutMs"/> for a completion to reap; false on timeout. Only for draining.</summary>
    bool WaitForCompletions(int timeoutMs);
}
