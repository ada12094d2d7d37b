using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// One front-end message as the loop received it: header, bounded payload and the fds that came with it. A handler
/// that keeps an fd says so with <see cref="Keep"/>; every fd not kept is closed when the handler returns, on every path.
/// </summary>
internal readonly ref struct VhostMessage
{
    private readonly ReadOnlySpan<byte> _payload;
    private readonly List<SafeFd> _fds;
    private readonly HashSet<SafeFd> _kept;

    public VhostMessage(VhostHeader header, ReadOnlySpan<byte> payload, List<SafeFd> fds, HashSet<SafeFd> kept)
    {
        Header = header;
        _payload = payload;
        _fds = fds;
        _kept = kept;
    }

    public VhostHeader Header { get; }
    public VhostRequest Request => (VhostRequest)Header.Request;
    public int FdCount => _fds.Count;
    public PayloadReader Reader() => new(_payload, Request);

    /// <summary>Throws unless exactly <paramref name="count"/> fds came with the message.</summary>
    public void ExpectFds(int count)
    {
        if (_fds.Count != count)
            throw new VhostProtocolException($"{Request}: expected {count} file descriptor(s), got {_fds.Count}");
    }

    /// <summary>Fd <paramref name="i"/>, still owned by the loop until <see cref="Keep"/>.</summary>
    public SafeFd Fd(int i) => _fds[i];

    /// <summary>The handler takes ownership of <paramref name="fd"/>: the loop will not close it.</summary>
    public SafeFd Keep(SafeFd fd)
    {
        _kept.Add(fd);
        return fd;
    }
}
