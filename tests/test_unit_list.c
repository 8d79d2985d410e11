/*
 * test_unit_list.c - dsi_list: push_back/pop_front is FIFO and push_front/pop_front LIFO; removal
 * of the first, a middle and the last record keeps the rest in order with both directions linked;
 * the _safe iteration lets the body remove (and free) the current record; and the empty cases
 * (pop, head, iteration, removing the only record) behave as the header says; splice_back moves a
 * whole list in order.
 */
#include <stdlib.h>

#include "dsi_list.h"
#include "dsi_test.h"

typedef struct {
    int before; /* so that the link is not the first member: dsi_container_of must subtract */
    dsi_list_t link;
    int value;
} item_t;

static item_t items[8];

static void items_reset(void)
{
    for (int i = 0; i < 8; i++)
        items[i] = (item_t){.before = -1, .value = i};
}

/* The list's values head to tail into out[] (at most cap); returns how many there are. */
static int collect(const dsi_list_t *head, int *out, int cap)
{
    int n = 0;
    dsi_list_for_each(it, head, const item_t, link) {
        if (n < cap)
            out[n] = it->value;
        n++;
    }
    return n;
}

/* Checks the list holds exactly want[0..n) in order, walking forwards and backwards. */
static void check_list(const dsi_list_t *head, const int *want, int n)
{
    int got[16];
    DSI_CHECK_INT_EQ(collect(head, got, 16), n);
    for (int i = 0; i < n && i < 16; i++)
        DSI_CHECK_INT_EQ(got[i], want[i]);
    int i = n - 1;
    for (const dsi_list_t *l = head->prev; l != head; l = l->prev, i--) {
        DSI_CHECK(i >= 0);
        if (i >= 0)
            DSI_CHECK_INT_EQ(dsi_container_of(l, const item_t, link)->value, want[i]);
    }
    DSI_CHECK_INT_EQ(i, -1);
    DSI_CHECK_INT_EQ(dsi_list_is_empty(head), n == 0);
}

static int pop_value(dsi_list_t *head)
{
    dsi_list_t *l = dsi_list_pop_front(head);
    return l == NULL ? -1 : dsi_container_of(l, item_t, link)->value;
}

static void test_empty(void)
{
    dsi_list_t head;
    dsi_list_init(&head);
    DSI_CHECK(dsi_list_is_empty(&head));
    DSI_CHECK(dsi_list_head(&head) == NULL);
    DSI_CHECK(dsi_list_pop_front(&head) == NULL);
    int visited = 0;
    dsi_list_for_each(it, &head, item_t, link)
        visited++;
    dsi_list_for_each_safe(it, &head, item_t, link)
        visited++;
    DSI_CHECK_INT_EQ(visited, 0);
    check_list(&head, NULL, 0);

    /* One record in, then out again by remove: the list is empty and reusable. */
    items_reset();
    dsi_list_push_back(&head, &items[3].link);
    DSI_CHECK(!dsi_list_is_empty(&head));
    DSI_CHECK(dsi_list_head(&head) == &items[3].link);
    dsi_list_remove(&items[3].link);
    DSI_CHECK(dsi_list_is_empty(&head));
    DSI_CHECK(items[3].link.prev == NULL && items[3].link.next == NULL);
    DSI_CHECK(head.prev == &head && head.next == &head);
    dsi_list_push_front(&head, &items[3].link);
    DSI_CHECK_INT_EQ(pop_value(&head), 3);
    DSI_CHECK_INT_EQ(pop_value(&head), -1);
    DSI_CHECK_INT_EQ(items[3].before, -1); /* the link's neighbours in the record are untouched */
}

static void test_fifo_lifo(void)
{
    dsi_list_t head;
    dsi_list_init(&head);
    items_reset();
    for (int i = 0; i < 5; i++)
        dsi_list_push_back(&head, &items[i].link);
    check_list(&head, (const int[]){0, 1, 2, 3, 4}, 5);
    DSI_CHECK(dsi_list_head(&head) == &items[0].link);
    for (int i = 0; i < 5; i++)
        DSI_CHECK_INT_EQ(pop_value(&head), i);
    DSI_CHECK_INT_EQ(pop_value(&head), -1);

    for (int i = 0; i < 5; i++)
        dsi_list_push_front(&head, &items[i].link);
    check_list(&head, (const int[]){4, 3, 2, 1, 0}, 5);
    for (int i = 4; i >= 0; i--)
        DSI_CHECK_INT_EQ(pop_value(&head), i);
    DSI_CHECK(dsi_list_is_empty(&head));

    /* Interleaved pushes and pops keep FIFO order across the wrap of the circular links. */
    dsi_list_push_back(&head, &items[0].link);
    dsi_list_push_back(&head, &items[1].link);
    DSI_CHECK_INT_EQ(pop_value(&head), 0);
    dsi_list_push_back(&head, &items[2].link);
    dsi_list_push_back(&head, &items[0].link); /* popped records can be pushed again */
    DSI_CHECK_INT_EQ(pop_value(&head), 1);
    DSI_CHECK_INT_EQ(pop_value(&head), 2);
    DSI_CHECK_INT_EQ(pop_value(&head), 0);
    DSI_CHECK_INT_EQ(pop_value(&head), -1);
}

static void test_remove(void)
{
    dsi_list_t head;
    dsi_list_init(&head);
    items_reset();
    for (int i = 0; i < 6; i++)
        dsi_list_push_back(&head, &items[i].link);
    dsi_list_remove(&items[0].link); /* first */
    check_list(&head, (const int[]){1, 2, 3, 4, 5}, 5);
    dsi_list_remove(&items[3].link); /* middle */
    check_list(&head, (const int[]){1, 2, 4, 5}, 4);
    dsi_list_remove(&items[5].link); /* last */
    check_list(&head, (const int[]){1, 2, 4}, 3);
    DSI_CHECK(dsi_list_head(&head) == &items[1].link);
    dsi_list_push_back(&head, &items[5].link);
    dsi_list_push_front(&head, &items[0].link);
    check_list(&head, (const int[]){0, 1, 2, 4, 5}, 5);
    for (int i = 0; i < 5; i++)
        dsi_list_pop_front(&head);
    check_list(&head, NULL, 0);
}

/* The safe iteration over malloc'ed records: remove and free some, keep the rest in order. */
static void test_safe_iteration(void)
{
    dsi_list_t head;
    dsi_list_init(&head);
    for (int i = 0; i < 7; i++) {
        item_t *it = malloc(sizeof(*it));
        DSI_CHECK(it != NULL);
        if (it == NULL)
            return;
        it->value = i;
        dsi_list_push_back(&head, &it->link);
    }
    int order[7], n = 0;
    dsi_list_for_each_safe(it, &head, item_t, link) {
        order[n++] = it->value;
        if (it->value % 3 == 0) { /* 0 (first), 3 (middle), 6 (last) */
            dsi_list_remove(&it->link);
            free(it); /* under ASan, a read of `it` after this would be reported */
        }
    }
    DSI_CHECK_INT_EQ(n, 7);
    for (int i = 0; i < n; i++)
        DSI_CHECK_INT_EQ(order[i], i);
    check_list(&head, (const int[]){1, 2, 4, 5}, 4);

    /* Removing every record leaves an empty list. */
    dsi_list_for_each_safe(it, &head, item_t, link) {
        dsi_list_remove(&it->link);
        free(it);
    }
    check_list(&head, NULL, 0);
}

/* A plain iteration that stops early, and one whose body appends: the new record is visited. */
static void test_iteration(void)
{
    dsi_list_t head;
    dsi_list_init(&head);
    items_reset();
    for (int i = 0; i < 3; i++)
        dsi_list_push_back(&head, &items[i].link);
    item_t *found = NULL;
    dsi_list_for_each(it, &head, item_t, link) {
        if (it->value == 1) {
            found = it;
            break;
        }
    }
    DSI_CHECK(found == &items[1]);
    int n = 0;
    dsi_list_for_each(it, &head, item_t, link) {
        if (it->value == 0)
            dsi_list_push_back(&head, &items[7].link);
        n++;
    }
    DSI_CHECK_INT_EQ(n, 4);
    check_list(&head, (const int[]){0, 1, 2, 7}, 4);
}

/* splice_back moves a whole list to the tail of another in order and empties it. */
static void test_splice(void)
{
    dsi_list_t a, b;
    dsi_list_init(&a);
    dsi_list_init(&b);
    items_reset();
    dsi_list_splice_back(&a, &b); /* both empty */
    check_list(&a, NULL, 0);
    dsi_list_push_back(&b, &items[0].link);
    dsi_list_push_back(&b, &items[1].link);
    dsi_list_splice_back(&a, &b); /* into an empty list */
    check_list(&a, (const int[]){0, 1}, 2);
    check_list(&b, NULL, 0);
    dsi_list_push_back(&b, &items[2].link);
    dsi_list_push_back(&b, &items[3].link);
    dsi_list_push_back(&b, &items[4].link);
    dsi_list_splice_back(&a, &b);
    check_list(&a, (const int[]){0, 1, 2, 3, 4}, 5);
    check_list(&b, NULL, 0);
    dsi_list_splice_back(&a, &b); /* from an empty list: nothing changes */
    check_list(&a, (const int[]){0, 1, 2, 3, 4}, 5);
}

int main(void)
{
    test_splice();
    test_empty();
    test_fifo_lifo();
    test_remove();
    test_safe_iteration();
    test_iteration();
    return dsi_test_finish();
}
