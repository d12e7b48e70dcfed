%% The ETS anchor of bench_table: the same workload on an ETS set with
%% read_concurrency (run with erl +S 2). Prints one "name ops_per_second"
%% line per measurement; bench_table parses them.
-module(ets_bench).
-export([main/1]).

key(I) -> list_to_binary(io_lib:format("k~15..0B", [I])).
value(I) -> <<I:64, (binary:copy(<<"v">>, 92))/binary>>.

main([NKeysS, NOpsS, StrideS]) ->
    NKeys = list_to_integer(atom_to_list(NKeysS)),
    NOps = list_to_integer(atom_to_list(NOpsS)),
    persistent_term:put({?MODULE, stride}, list_to_integer(atom_to_list(StrideS))),
    Keys = list_to_tuple([key(I) || I <- lists:seq(0, NKeys - 1)]),
    T = ets:new(bench, [set, public, {read_concurrency, true}]),
    {TIns, _} = timer:tc(fun() -> [ets:insert(T, {element(I, Keys), value(I)})
                                    || I <- lists:seq(1, NKeys)] end),
    report(insert_new, NKeys, TIns),
    {TUpd, _} = timer:tc(fun() -> overwrite(T, Keys, NKeys, NKeys, 0) end),
    report(insert_overwrite, NKeys, TUpd),
    report(lookup_1, NOps, par(1, fun(Seed) -> lookups(T, Keys, NKeys, NOps, Seed) end)),
    report(lookup_2, 2 * NOps, par(2, fun(Seed) -> lookups(T, Keys, NKeys, NOps, Seed) end)),
    report(mix_1, NOps, par(1, fun(Seed) -> mix(T, Keys, NKeys, NOps, Seed) end)),
    report(mix_2, 2 * NOps, par(2, fun(Seed) -> mix(T, Keys, NKeys, NOps, Seed) end)),
    halt(0).

report(Name, N, Micros) ->
    io:format("~s ~p~n", [Name, round(N * 1.0e6 / max(Micros, 1))]).

%% Runs N copies at once; the time until the last one finishes.
par(N, F) ->
    Self = self(),
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() -> F(S), Self ! {done, self()} end) || S <- lists:seq(1, N)],
    [receive {done, P} -> ok end || P <- Pids],
    erlang:monotonic_time(microsecond) - T0.

%% Keys are visited with a fixed stride, the same walk as bench_table's
%% (which passes its --stride, coprime to the key count: 40503 scatters the
%% walk over the table, 1 visits the keys in insertion order).
step(I, NKeys) -> (I + persistent_term:get({?MODULE, stride})) rem NKeys.

overwrite(_T, _Keys, _NKeys, 0, _X) -> ok;
overwrite(T, Keys, NKeys, N, X) ->
    X1 = step(X, NKeys),
    ets:insert(T, {element(X1 + 1, Keys), value(X1)}),
    overwrite(T, Keys, NKeys, N - 1, X1).

%% Process Seed (1 or 2) starts at its share of the keys, as in bench_table.
start(Seed, NKeys) -> ((Seed - 1) * (NKeys div 2) + 13) rem NKeys.

lookups(T, Keys, NKeys, N, Seed) -> lookups(T, Keys, NKeys, N, start(Seed, NKeys), 0).
lookups(_T, _Keys, _NKeys, 0, _X, Found) -> Found;
lookups(T, Keys, NKeys, N, X, Found) ->
    X1 = step(X, NKeys),
    F = case ets:lookup(T, element(X1 + 1, Keys)) of [_] -> 1; [] -> 0 end,
    lookups(T, Keys, NKeys, N - 1, X1, Found + F).

%% 90 % lookups, 10 % overwrites.
mix(T, Keys, NKeys, N, Seed) -> mix(T, Keys, NKeys, N, start(Seed, NKeys), 0).
mix(_T, _Keys, _NKeys, 0, _X, Found) -> Found;
mix(T, Keys, NKeys, N, X, Found) ->
    X1 = step(X, NKeys),
    case N rem 10 of
        0 -> ets:insert(T, {element(X1 + 1, Keys), value(X1)}),
             mix(T, Keys, NKeys, N - 1, X1, Found);
        _ ->
            F = case ets:lookup(T, element(X1 + 1, Keys)) of [_] -> 1; [] -> 0 end,
            mix(T, Keys, NKeys, N - 1, X1, Found + F)
    end.
